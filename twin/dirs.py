"""Directories written whole: a reader finds the old one or the new one, never a part."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def dir_written_whole(target: Path) -> Iterator[Path]:
    """A new temporary dir beside ``target`` to write into. When the block ends, the dir
    replaces ``target`` (an existing one is removed first); when the block fails, or is
    interrupted, it is removed and ``target`` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
