"""Runs compared by fidelity: perplexity, the discriminator, style and people's verdict.

One row per run with a fidelity report (``twin eval``); the run's own page shows the whole
report (``partials/fidelity.html``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from twin.config import Settings
from twin.evaluate.game import load_score
from twin.evaluate.report import FidelityReport, style_ratios_inside
from twin.runs import list_runs, load_run
from twin.web.deps import SettingsDep, render

router = APIRouter()


def comparison_rows(settings: Settings) -> list[dict[str, Any]]:
    """A row per run, newest first: its summary, fidelity report (or None) and game score."""
    rows = []
    for run in list_runs(settings):
        stored = load_run(run.run_dir).fidelity
        report = FidelityReport.model_validate(stored) if stored else None
        rows.append(
            {
                "run": run,
                "report": report,
                "style_inside": style_ratios_inside(report) if report else (0, 0),
                "score": load_score(run.run_dir),
            }
        )
    return rows


@router.get("/fidelity")
def fidelity_page(request: Request, settings: SettingsDep) -> Response:
    return render(request, "fidelity.html", {"rows": comparison_rows(settings)})
