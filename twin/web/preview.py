"""What the pages show of the dataset besides its stats: a preview, a few training
samples streamed from train.json (never read whole), half of them ones where the scrubber left
a placeholder, with the placeholders marked."""

from __future__ import annotations

import re
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import ijson
from markupsafe import Markup, escape

from twin.prepare.files import TRAIN_FILE
from twin.prepare.scrub import PLACEHOLDER_TYPES

PREVIEW_SAMPLES = 8
PREVIEW_SCAN = 5000
"""Samples read at most when looking for ones that show placeholders."""


@cache
def _placeholder_res() -> tuple[re.Pattern[str], re.Pattern[str]]:
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
