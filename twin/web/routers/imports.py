"""Import: upload a Telegram Desktop export and import it as a background job."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from twin.importer import ImportSummary, import_export
from twin.jobs import JobBusy
from twin.web.background import Report, start_in_thread
from twin.web.deps import SettingsDep, StateDep, render
from twin.web.upload import receive_upload, size_text

router = APIRouter()


@router.get("/import")
def import_page(request: Request, settings: SettingsDep) -> Response:
    return render(request, "import.html", {"limit": size_text(settings.max_upload_bytes)})


@router.post("/import")
async def import_upload(request: Request, state: StateDep) -> Response:
    """Receive the export as the raw request body (streamed to disk), then start the import.

    Answers 201 with the job page's URL; a refused upload answers 4xx with ``detail`` and
    ``hint`` and leaves nothing behind.
    """
    settings = state.settings
    length = request.headers.get("content-length")
    path = await receive_upload(
        settings=settings,
        chunks=request.stream(),
        declared_size=int(length) if length and length.isdigit() else None,
    )

    def work(report: Report) -> ImportSummary:
        return import_export(settings=settings, path=path, progress=report)

    try:
        job = start_in_thread(
            settings=settings,
            kind="import",
            work=work,
            live=state.live_progress,
            unit="bytes",
            # The import is one transaction holding the write lock; progress stays in memory.
            persist_progress=False,
            cleanup=lambda: path.unlink(missing_ok=True),
        )
    except JobBusy as exc:
        return JSONResponse(
            {"detail": exc.message, "hint": "Wait for it to finish.", "url": f"/jobs/{exc.job_id}"},
            status_code=409,
        )
    return JSONResponse({"url": f"/jobs/{job.id}"}, status_code=201)
