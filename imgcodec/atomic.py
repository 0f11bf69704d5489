"""Atomic file output: write a temporary file beside the target, fsync, then rename.

A reader (or a ``kill -9``) never sees a partial file, and an existing file is replaced only when
the caller asked for it (``force``) and only once the new content is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, BinaryIO

from .errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable(path: Path, force: bool) -> None:
    """Fail early, before any work, if ``path`` cannot be (over)written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory")
    if path.exists() and not force:
        raise OutputError(f"output {path} exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable")


@contextlib.contextmanager
def atomic_open(path: Path, force: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file that becomes ``path`` when the block exits without error."""
    path = Path(path)
    check_writable(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not force and path.exists():  # appeared while we worked: never clobber it
            raise OutputError(f"output {path} exists (use --force to overwrite)")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes, force: bool = False) -> None:
    write_atomic(path, lambda f: f.write(data), force)


def write_atomic(path: Path, writer: Callable[[BinaryIO], None], force: bool = False) -> None:
    try:
        with atomic_open(path, force) as f:
            writer(f)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
