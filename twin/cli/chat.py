"""``twin chat``: talk to the twin in the terminal; ``twin eval``: its fidelity report."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from twin.chat.defaults import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    Sampling,
)
from twin.config import Settings, get_settings
from twin.db import session_scope
from twin.evaluate.game import human_figure
from twin.models import Owner
from twin.prepare.format import NEUTRAL_ME, Turn
from twin.runs import load_run, resolve_run_dir

RunArgument = Annotated[
    str | None,
    typer.Argument(help="Run id (under <data dir>/runs) or run dir; default: the newest finished."),
]
HELP_LINE = "Type a message and press Enter. /new starts over, /quit leaves."


def _owner_name(settings: Settings) -> str:
    """My name as the dataset tags my turns: the Telegram account's name, else "Me"."""
    if settings.database_url is None and not (settings.data_dir / "twin.sqlite3").is_file():
        return NEUTRAL_ME  # nothing harvested yet; don't create an empty database just to look
    try:
        with session_scope(settings) as session:
            owner = session.get(Owner, 1)
    except SQLAlchemyError:
        return NEUTRAL_ME
    return (owner.display_name if owner else "") or NEUTRAL_ME


TemperatureOption = Annotated[
    float, typer.Option(help="Randomness; 0 always picks the most likely word.")
]
TopKOption = Annotated[
    int, typer.Option(help="Sample among the k most likely tokens (0: no limit).")
]
TopPOption = Annotated[
    float, typer.Option(help="Sample among the likeliest tokens covering this probability.")
]
MaxNewTokensOption = Annotated[int, typer.Option(help="The longest reply, in tokens.")]


def chat(
    run: RunArgument = None,
    as_name: Annotated[
        str, typer.Option("--as", help="Who you are in the conversation (your tag).")
    ] = "Friend",
    me: Annotated[
        str | None, typer.Option(help="The twin's own name (default: your Telegram name).")
    ] = None,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    top_k: TopKOption = DEFAULT_TOP_K or 0,
    top_p: TopPOption = DEFAULT_TOP_P,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    seed: Annotated[int | None, typer.Option(help="Make replies reproducible.")] = None,
) -> None:
    """Talk to your twin in the terminal; its replies appear as they are written."""
    from twin.chat.load import load_twin  # loads torch and litgpt: only once a twin talks
    from twin.train.tiny import is_demo_model

    settings = get_settings()
    run_dir = resolve_run_dir(settings=settings, run=run)
    me = me or _owner_name(settings)
    typer.echo(f"loading {run_dir.name} …", err=True)
    twin = load_twin(run_dir=run_dir)
    if is_demo_model(load_run(run_dir).base_model_dir):
        typer.echo(
            "note: this run was trained on the tiny offline demo model; expect the prompt's "
            "shape and a few of your words, not language.",
            err=True,
        )
    typer.echo(f"Chatting with {me}'s twin (run {run_dir.name}) as {as_name}. {HELP_LINE}")
    turns: list[Turn] = []
    while True:
        typer.echo(f"{as_name}> ", nl=False)
        line = sys.stdin.readline()
        if not line:  # end of input (Ctrl-D)
            typer.echo()
            return
        text = line.strip()
        if text == "/quit":
            return
        if text == "/new":
            turns = []
            typer.echo("(new conversation)")
            continue
        if not text:
            continue
        turns.append(Turn(speaker=as_name, text=text, mine=False))
        typer.echo(f"{me}: ", nl=False)
        pieces = []
        for piece in twin.stream_reply(
            context=turns,
            me=me,
            peer=as_name,
            temperature=temperature,
            top_k=top_k or None,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
        ):
            pieces.append(piece)
            typer.echo(piece, nl=False)  # flushes: each piece shows as soon as it exists
        reply = "".join(pieces).strip()
        typer.echo("" if reply else "(no reply)")
        if reply:
            turns.append(Turn(speaker=me, text=reply, mine=True))


def evaluate(
    run: RunArgument = None,
    samples: Annotated[int, typer.Option(help="Side-by-side samples to show.")] = 3,
    max_samples: Annotated[int, typer.Option(help="Validation samples to score at most.")] = 200,
    replies: Annotated[
        int, typer.Option(help="Held-out contexts to reply to, for style and discriminator.")
    ] = 64,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    top_k: TopKOption = DEFAULT_TOP_K or 0,
    top_p: TopPOption = DEFAULT_TOP_P,
    seed: Annotated[int, typer.Option(help="Picks and seeds the held-out replies.")] = 0,
) -> None:
    """Fidelity report: perplexity, style figures and a discriminator test, twin vs base.

    The replies are drawn with the chat's sampling settings unless told otherwise: the report
    judges the twin you talk to.
    """
    from twin.evaluate.fidelity import evaluate_run, format_report  # loads torch and litgpt

    settings = get_settings()
    run_dir = resolve_run_dir(settings=settings, run=run)
    typer.echo(f"scoring {run_dir.name} against its base model …", err=True)
    said: set[str] = set()

    def progress(done: int, total: int, stage: str) -> None:
        if stage.startswith("waiting for") and stage not in said:
            said.add(stage)
            typer.echo(f"{stage} (one heavy job at a time) …", err=True)

    report = evaluate_run(
        settings=settings,
        run_dir=run_dir,
        samples=samples,
        max_samples=max_samples,
        replies=replies,
        max_new_tokens=max_new_tokens,
        sampling=Sampling(temperature=temperature, top_k=top_k or None, top_p=top_p),
        seed=seed,
        human=human_figure(run_dir),
        progress=progress,
    )
    typer.echo(format_report(report))
    typer.echo(f"\nsaved in {run_dir / 'run.json'}", err=True)


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
    app.command("eval")(evaluate)
