"""``prepare_dataset``: the store's included chats → scrubbed samples → litgpt JSON files.

The output directory holds the files of `twin.prepare.files`, replaced together. The same
database and options give byte-identical files. The rules live in `twin.prepare.sessions`;
this module reads, scrubs, times and writes.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from twin.basemodel.checkpoint import TOKENIZER_FILES, choose_base_model, load_tokenizer
from twin.config import Settings
from twin.db import get_engine
from twin.dirs import swap_in
from twin.errors import PrepareError
from twin.models import Owner
from twin.prepare.files import (
    DATASET_FILES,
    STATS_FILE,
    DialogStats,
    LengthStats,
    PrepareStats,
    TokenizerInfo,
    tokenizer_fingerprint,
)
from twin.prepare.format import speaker_names
from twin.prepare.scrub import Scrubber, ScrubConfig, ScrubReport
from twin.prepare.sessions import (
    CHARS_PER_TOKEN,
    DAY_SECONDS,
    CharBudget,
    LengthBudget,
    TokenBudget,
    build_samples,
    iter_sessions,
    merge_consecutive,
    scrub_session,
)
from twin.prepare.split import (
    SplitWriter,
    remove_abandoned_temp_dirs,
    session_score,
    write_json,
)
from twin.store import ChatMessage, count_messages, dialog_message_counts, iter_message_batches

_FAR = 2**62  # stands for "no bound" in the date filter

Progress = Callable[[int, int], None]
"""Called as ``progress(dialogs_done, dialogs_total)``."""


def default_tokenizer_dir(settings: Settings) -> Path | None:
    """The base model's dir when it has a tokenizer (lengths in its tokens), else None
    (the character budget).

    Args:
        settings: whose base model.
    """
    chosen = choose_base_model(settings)  # the model training will use by default
    base = chosen.path if chosen is not None else settings.base_model_path
    return base if any((base / name).is_file() for name in TOKENIZER_FILES) else None


def prepare_dataset(
    *,
    settings: Settings,
    out_dir: Path,
    tokenizer_dir: Path | None = None,
    max_seq_length: int = 512,
    gap_seconds: int = DAY_SECONDS,
    min_messages: int = 10,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    val_fraction: float = 0.1,
    seed: int = 42,
    scrub_config: ScrubConfig | None = None,
    progress: Progress | None = None,
) -> PrepareStats:
    """Build the instruction dataset from the included chats and write it to ``out_dir``.

    The files are written into a temporary directory next to ``out_dir`` and swapped in at the
    end, so ``out_dir`` holds either the previous complete dataset or the new one; on error
    nothing new is left behind.

    Args:
        settings: whose database to read.
        out_dir: the dataset directory (created, or replaced when it holds a dataset).
        tokenizer_dir: a litgpt checkpoint dir whose tokenizer measures lengths; None measures
            characters (``CHARS_PER_TOKEN`` per token).
        max_seq_length: the most tokens a prompt + reply + EOS may take.
        gap_seconds: a silence this long or longer starts a new session.
        min_messages: dialogs with fewer messages (in the date range) are skipped.
        since: keep messages sent at or after this (a date means its midnight; naive = UTC).
        until: keep messages sent up to this moment, inclusive (a date includes that whole
            day; naive = UTC).
        val_fraction: the share of samples held out for validation, in (0, 1); whole
            sessions are held out, chosen by size to come close to it (see
            `twin.prepare.split.choose_validation`).
        seed: the seed of the train/validation split.
        scrub_config: phone regions and blocklist; default: the settings' regions.
        progress: called with (dialogs done, dialogs total) as dialogs are processed.
    """
    _check_options(max_seq_length, gap_seconds, min_messages, val_fraction)
    since_unix, until_unix = _to_unix(since, end=False), _to_unix(until, end=True)
    if since_unix is not None and until_unix is not None and since_unix >= until_unix:
        raise PrepareError("--since is not before --until.", hint="Swap or widen the dates.")
    budget, tokenizer_info = _load_budget(tokenizer_dir, max_seq_length)
    scrubber = Scrubber(scrub_config or ScrubConfig(regions=list(settings.phone_regions)))
    out_dir = out_dir.expanduser().resolve()
    _check_out_dir(out_dir)
    stats = PrepareStats(
        tokenizer=tokenizer_info,
        max_seq_length=max_seq_length,
        length_unit=budget.unit,
        chars_per_token=CHARS_PER_TOKEN if tokenizer_info is None else None,
        gap_seconds=gap_seconds,
        min_messages=min_messages,
        since=_from_unix(since_unix),
        until=_from_unix(until_unix),
        val_fraction=val_fraction,
        seed=seed,
        out_dir=out_dir,
    )
    timings = Counter[str]()
    with Session(get_engine(settings)) as session:
        bounds = (
            -_FAR if since_unix is None else since_unix,
            _FAR if until_unix is None else until_unix,
        )
        dialogs = _choose_dialogs(session, stats, bounds, min_messages)
        owner = session.get(Owner, 1)
        owner_name = owner.display_name if owner is not None else ""
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temp_dirs(out_dir)
        tmp_dir = Path(
            tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}.", dir=out_dir.parent)
        )
        try:
            writer = SplitWriter(tmp_dir, val_fraction=val_fraction)
            report = ScrubReport()
            lengths = array("I")
            skipped = Counter[str]()
            for done, (dialog_stats, peer_id, peer_name) in enumerate(dialogs, start=1):
                me, peer = speaker_names(me=owner_name, peer=peer_name, scrubber=scrubber)
                dialog_id = dialog_stats.id
                rows = _read_dialog(session, dialog_id, bounds, timings)
                for messages in iter_sessions(rows, gap_seconds=gap_seconds):
                    stats.sessions += 1
                    if not any(m.out for m in messages):
                        continue  # nothing of mine to learn from; skip the scrubbing too
                    started = time.perf_counter()
                    messages = scrub_session(messages, scrubber, report, str(dialog_id))
                    timings["scrub"] += time.perf_counter() - started
                    started = time.perf_counter()
                    turns = merge_consecutive(messages, me=me, peer=peer)
                    built = build_samples(turns, me=me, peer=peer, budget=budget)
                    timings["rules"] += time.perf_counter() - started
                    skipped.update(built.skipped)
                    if not built.samples:
                        continue
                    started = time.perf_counter()
                    score = session_score(seed=seed, peer_id=peer_id, first_tg_id=messages[0].tg_id)
                    kept = writer.add_session(built.samples, score=score)
                    timings["write"] += time.perf_counter() - started
                    dialog_stats.samples += len(kept)
                    stats.trimmed += sum(s.trimmed for s in kept)
                    lengths.extend(s.length for s in kept)
                dialog_stats.status = "used" if dialog_stats.samples else "no_samples"
                if progress is not None:
                    progress(done, len(dialogs))
            started = time.perf_counter()
            stats.warnings.extend(writer.close())
            _finish_stats(stats, writer, report, lengths, skipped)
            if not lengths:
                raise _no_samples_error(skipped)
            write_json(tmp_dir / STATS_FILE, stats.model_dump(mode="json"))
            swap_in(tmp_dir, out_dir)
            timings["write"] += time.perf_counter() - started
        except OSError as exc:
            raise _write_error(out_dir, exc) from exc
        finally:
            # After a swap this holds the previous dataset; after an error, the partial one.
            shutil.rmtree(tmp_dir, ignore_errors=True)
    stats.timings = {k: round(v, 3) for k, v in sorted(timings.items())}
    return stats


def _write_error(out_dir: Path, exc: OSError) -> PrepareError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return PrepareError(
            f"No space left to write the dataset next to {out_dir}; the previous dataset is "
            "unchanged.",
            hint="Free some disk space (or pass --out on another disk) and run prepare again.",
        )
    return PrepareError(
        f"Could not write the dataset next to {out_dir}: {exc.strerror or exc}; the previous "
        "dataset is unchanged.",
        hint="Check that the folder exists and is writable.",
    )


def _check_options(
    max_seq_length: int, gap_seconds: int, min_messages: int, val_fraction: float
) -> None:
    if max_seq_length < 16:
        raise PrepareError(f"max_seq_length {max_seq_length} is too small.", hint="Use 256+.")
    if gap_seconds <= 0:
        raise PrepareError("The session gap must be positive.", hint="Use e.g. --gap-hours 24.")
    if min_messages < 0:
        raise PrepareError("min_messages cannot be negative.", hint="Use 0 to keep every chat.")
    if not 0 < val_fraction < 1:
        raise PrepareError(
            f"val_fraction {val_fraction} is not between 0 and 1.", hint="Use e.g. 0.1."
        )


def _to_unix(value: date | datetime | None, *, end: bool) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return int((moment + timedelta(days=1 if end else 0)).timestamp())
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    # Messages carry whole seconds: sent >= t holds iff sent >= ceil(t); an inclusive end
    # (sent <= t) is the exclusive bound floor(t) + 1.
    if end:
        return math.floor(moment.timestamp()) + 1
    return math.ceil(moment.timestamp())


def _from_unix(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _load_budget(
    tokenizer_dir: Path | None, max_seq_length: int
) -> tuple[LengthBudget, TokenizerInfo | None]:
    if tokenizer_dir is None:
        return CharBudget(max_seq_length=max_seq_length), None
    tokenizer_dir = tokenizer_dir.expanduser().resolve()
    fingerprint = tokenizer_fingerprint(tokenizer_dir)
    tokenizer = load_tokenizer(
        tokenizer_dir,
        error=PrepareError,
        hint="Point --tokenizer at a complete litgpt checkpoint dir (see `litgpt download`).",
    )
    info = TokenizerInfo(dir=str(tokenizer_dir), sha256=fingerprint)
    return TokenBudget(tokenizer=tokenizer, max_seq_length=max_seq_length), info


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PrepareError(f"{out_dir} is a file.", hint="Pass a directory to --out.")
    if out_dir.is_dir():
        strangers = sorted(p.name for p in out_dir.iterdir() if p.name not in DATASET_FILES)
        if strangers:
            # The whole directory gets replaced: never take someone's files with it.
            raise PrepareError(
                f"{out_dir} holds files that are not part of a dataset: "
                f"{', '.join(strangers[:3])}.",
                hint="Pass a new or empty directory to --out.",
            )


def _choose_dialogs(
    session: Session,
    stats: PrepareStats,
    bounds: tuple[int, int],
    min_messages: int,
) -> list[tuple[DialogStats, int, str]]:
    """The dialogs to read, as (their stats, peer_id, name); records all in ``stats``."""
    try:
        total = count_messages(session)
    except OperationalError as exc:  # no such table: a database never migrated
        raise PrepareError(
            f"The database cannot be read: {exc.orig}.",
            hint="Run `twin db upgrade`, then import or harvest your chats.",
        ) from exc
    if total == 0:
        raise PrepareError(
            "The store has no messages yet.",
            hint="Harvest your chats (`twin harvest`) or import a Telegram Desktop export "
            "(`twin import result.json`) first.",
        )
    since_unix, until_unix = bounds
    chosen = []
    for row in dialog_message_counts(session, since_unix=since_unix, until_unix=until_unix):
        count = row.messages
        status = (
            "excluded" if not row.included else "too_few_messages" if count < min_messages else ""
        )
        dialog = DialogStats(id=row.id, status=status or "used", messages=count)
        stats.dialogs.append(dialog)
        if not status:
            chosen.append((dialog, row.peer_id, row.name))
            stats.messages += count
    included = [d for d in stats.dialogs if d.status != "excluded"]
    if not included:
        raise PrepareError(
            "Every chat is excluded from training.",
            hint="Include at least one contact: `twin contacts --include NAME`.",
        )
    if not any(d.messages for d in included):
        raise PrepareError(
            "No message of the included chats falls in the chosen dates.",
            hint="Widen or drop --since / --until.",
        )
    if not chosen:
        raise PrepareError(
            f"No included chat has {min_messages} messages or more.",
            hint="Lower --min-messages, or include more contacts (`twin contacts --include`).",
        )
    return chosen


def _read_dialog(
    session: Session,
    dialog_id: int,
    bounds: tuple[int, int],
    timings: Counter[str],
) -> Iterator[ChatMessage]:
    since_unix, until_unix = bounds
    batches = iter_message_batches(
        session, dialog_id=dialog_id, since_unix=since_unix, until_unix=until_unix
    )
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        timings["read"] += time.perf_counter() - started
        if batch is None:
            return
        yield from batch


def _finish_stats(
    stats: PrepareStats,
    writer: SplitWriter,
    report: ScrubReport,
    lengths: array[int],
    skipped: Counter[str],
) -> None:
    stats.sessions_train, stats.sessions_val = writer.sessions["train"], writer.sessions["val"]
    stats.samples_train, stats.samples_val = writer.samples["train"], writer.samples["val"]
    stats.duplicates_removed = writer.duplicates
    stats.skipped_outputs = dict(sorted(skipped.items()))
    for dialog in stats.dialogs:
        if dialog.status != "used":
            stats.dialogs_skipped[dialog.status] = stats.dialogs_skipped.get(dialog.status, 0) + 1
    stats.dialogs_used = sum(d.status == "used" for d in stats.dialogs)
    stats.dialogs_skipped = dict(sorted(stats.dialogs_skipped.items()))
    stats.scrub = report.as_dict()
    stats.scrub_totals = dict(sorted(report.totals().items()))
    if lengths:
        ordered = sorted(lengths)
        stats.lengths = LengthStats(
            mean=round(sum(ordered) / len(ordered), 2),
            p95=ordered[math.ceil(0.95 * len(ordered)) - 1],
            max=ordered[-1],
        )
    if stats.samples_val == 0:
        stats.warnings.append(
            "val.json is empty: only one conversation gave samples, so nothing could be "
            "held out. Validation loss will not be measured."
        )


def _no_samples_error(skipped: Counter[str]) -> PrepareError:
    too_long = skipped["reply_too_long"] + skipped["context_too_long"]
    if too_long:
        return PrepareError(
            f"No sample fits in the length budget ({too_long} replies were too long).",
            hint="Raise --max-seq-length.",
        )
    return PrepareError(
        "The included chats have no reply of yours to the other person: nothing to learn from.",
        hint="Include a contact you have written to (`twin contacts --include NAME`), or harvest "
        "or import the chats where you answer.",
    )
