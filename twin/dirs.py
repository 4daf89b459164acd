"""Directories written whole: a reader finds the old one or the new one, never a part, and
never no dir at all (the dataset, an export, a base model, a run's checkpoints and final/)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def swap_in(new_dir: Path, out_dir: Path) -> None:
    """Put ``new_dir`` at ``out_dir``; afterwards ``new_dir`` holds the old dir, if any.

    A new ``out_dir`` is one rename. An existing one is exchanged with ``renameat2``'s
    ``RENAME_EXCHANGE`` (Linux): both names flip in one step, so a reader sees the old complete
    dir or the new one, and a process killed at any moment leaves one of them at ``out_dir``.
    Where that call is missing, the old dir is moved aside first (``<new_dir>.old``): for a
    moment ``out_dir`` is absent, but it never holds a mix.
    """
    if not out_dir.exists():
        os.rename(new_dir, out_dir)
    elif not _exchange(new_dir, out_dir):
        aside = new_dir.with_name(new_dir.name + ".old")
        os.rename(out_dir, aside)
        os.rename(new_dir, out_dir)
        os.rename(aside, new_dir)
    directory = os.open(out_dir.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def replace_dir(new_dir: Path, out_dir: Path) -> None:
    """Put ``new_dir`` at ``out_dir`` as `swap_in` does, then delete the old dir."""
    swap_in(new_dir, out_dir)
    shutil.rmtree(new_dir, ignore_errors=True)


@cache
def _renameat2() -> Any:
    """libc's ``renameat2``, looked up once per process (None where libc has none)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    return getattr(libc, "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    return result == 0


@contextmanager
def dir_written_whole(target: Path) -> Iterator[Path]:
    """A new temporary dir beside ``target`` to write into. When the block ends, the dir
    replaces ``target`` (`replace_dir`); when the block fails, or is interrupted, it is removed
    and ``target`` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
