"""Downloads of a run's exports (``twin export``), listed on the run page; owner only.

Files are streamed from disk (``FileResponse`` reads in chunks: a multi-GB GGUF never sits in
memory) and only names that `twin.export.run.list_exports` lists can be asked for, so a request
cannot reach any other file.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from twin.export.run import EXPORT_DIR, list_exports
from twin.runs import list_runs
from twin.web.deps import StateDep

router = APIRouter()


def run_exports(run_dir: Path) -> list[dict[str, object]]:
    """The run page's list: each export with its files and their sizes in bytes."""
    return [
        {"name": name, "files": [{"name": f, "size": size} for f, size in files]}
        for name, files in list_exports(run_dir)
    ]


@router.get("/runs/{run_id}/exports/{name}/{filename}")
def download_export(run_id: str, name: str, filename: str, state: StateDep) -> FileResponse:
    """One file of one export of a run, as an attachment."""
    runs = {run.run_id: run.run_dir for run in list_runs(state.settings)}
    if run_id not in runs:
        raise HTTPException(status_code=404, detail=f"There is no training run {run_id!r}.")
    files = dict(list_exports(runs[run_id])).get(name, [])
    if filename not in {f for f, _ in files}:
        raise HTTPException(
            status_code=404,
            detail=f"Run {run_id} has no export file {name}/{filename}: create it with "
            f"`twin export {run_id} --format hf|gguf`.",
        )
    return FileResponse(
        runs[run_id] / EXPORT_DIR / name / filename,
        filename=f"{run_id}-{name}-{filename}",
        media_type="application/octet-stream",
    )
