"""Owner-only files written whole: a reader sees the old content or the new, never a part."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` atomically, readable by the owner only (0600).

    The temporary file has a name of its own per call, so two processes writing the same file
    at once (the ranks of a multi-process run, two web workers) each rename a whole file into
    place instead of one renaming the other's half-written one; a failed write leaves no
    temporary file behind.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
