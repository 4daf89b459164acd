"""Dataset: build it (a prepare job), its stats, a preview with placeholders, the scrub report."""

from __future__ import annotations

import re
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import ijson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from sqlalchemy import func
from sqlmodel import select

from twin.jobs import list_jobs
from twin.models import Dialog
from twin.pipeline import build_dataset, usable_base_model
from twin.prepare.files import TRAIN_FILE, PrepareStats, read_stats
from twin.web.background import Report, start_in_thread
from twin.web.deps import DbDep, StateDep, render
from twin.web.routers.jobs import job_redirect, job_view

router = APIRouter()

PREVIEW_SAMPLES = 8
PREVIEW_SCAN = 5000
"""Samples read at most when looking for ones that show placeholders."""


# twin.prepare pulls in litgpt and torch (seconds): imported on first use, not at server start.
@cache
def _placeholder_res() -> tuple[re.Pattern[str], re.Pattern[str]]:
    from twin.prepare.scrub import PLACEHOLDER_TYPES

    alternatives = "|".join(PLACEHOLDER_TYPES)
    # The escaped one runs on HTML, so a user's literal "&lt;EMAIL&gt;" can never match.
    return re.compile(f"<(?:{alternatives})>"), re.compile(f"&lt;({alternatives})&gt;")


def highlight_placeholders(text: str) -> Markup:
    """HTML of ``text`` with the scrubber's placeholders (``<EMAIL>``, …) marked.

    Args:
        text: a sample's text.
    """
    return Markup(
        _placeholder_res()[1].sub(r'<mark class="ph">&lt;\1&gt;</mark>', str(escape(text)))
    )


def read_preview(directory: Path, *, limit: int = PREVIEW_SAMPLES) -> list[dict[str, Any]]:
    """Up to ``limit`` training samples in file order, half of them (when there are any) ones
    where the scrubber left a placeholder, so the preview shows what it replaced.

    train.json may be hundreds of MB: it is streamed, and at most `PREVIEW_SCAN` samples read.

    Args:
        directory: the dataset dir.
        limit: how many samples.
    """
    path = directory / TRAIN_FILE
    if not path.is_file():
        return []
    placeholder = _placeholder_res()[0]
    scrubbed: list[tuple[int, dict[str, Any]]] = []
    plain: list[tuple[int, dict[str, Any]]] = []
    with path.open("rb") as f:
        for index, sample in enumerate(islice(ijson.items(f, "item"), PREVIEW_SCAN)):
            text = f"{sample.get('input', '')}\n{sample.get('output', '')}"
            if placeholder.search(text):
                if len(scrubbed) < limit // 2:
                    scrubbed.append((index, sample))
            elif len(plain) < limit:
                plain.append((index, sample))
            if len(scrubbed) >= limit // 2 and len(plain) >= limit:
                break
    chosen = scrubbed + plain[: limit - len(scrubbed)]
    return [sample for _, sample in sorted(chosen, key=lambda pair: pair[0])]


@router.get("/dataset")
def dataset_page(request: Request, db: DbDep, state: StateDep) -> Response:
    directory = state.settings.dataset_dir
    recent = list_jobs(settings=state.settings, kind="prepare", limit=1)
    included = db.exec(select(func.count()).select_from(Dialog).where(Dialog.included)).one()
    return render(
        request,
        "dataset.html",
        {
            "stats": read_stats(directory),
            "preview": read_preview(directory),
            "included": included,
            "job": job_view(recent[0], state.live_progress) if recent else None,
        },
    )


@router.post("/dataset")
def build_dataset_page(state: StateDep) -> Response:
    settings = state.settings

    def work(report: Report) -> PrepareStats:
        # Measured in the tokens of the model it will train (characters before there is one).
        return build_dataset(
            settings=settings, tokenizer_dir=usable_base_model(settings), report=report
        )

    return job_redirect(
        lambda: (
            start_in_thread(
                settings=settings, kind="prepare", work=work, live=state.live_progress, unit="chats"
            ).id
            or 0
        )
    )
