"""Atomic file output: write a temporary file beside the target, fsync, then rename.

A reader (or a ``kill -9``) never sees a partial file, and an existing file is replaced only when
the caller asked for it (``force``) and only once the new content is complete.  Without ``force``
the output's name is taken exclusively (a hard link of the temporary file, which fails where the name
exists), so two runs writing the same new output cannot replace each other's file.

What ``force`` may replace: never one of the command's input files (``inputs``; the same file
reached through another name, a symlink or a hard link counts), never a read-only file, never a
folder.  An output path that is a symlink is written *through*: the link stays and its target gets
the new content (atomically, by a rename beside the target); the replaced file keeps its
permission bits.  A failed write (a full disk, a file-size limit, no permission) is an
``OutputError`` naming the output and the cause, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _target(path: Path) -> Path:
    """Where the bytes go: ``path``, or the file a symlink at ``path`` points to (links followed)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: Path, force: bool, inputs=()) -> None:
    """Fail early, before any work, if ``path`` cannot be (over)written.

    ``inputs``: the files the command reads; the output may never be one of them, even with force.
    """
    path = Path(path)
    for src in inputs:
        if src is not None and _same_file(src, path):
            raise OutputError(f"output {path} is the input file {src} (refusing to overwrite it)")
    target = _target(path)
    if target.is_dir():
        raise OutputError(f"output {path} is a directory")
    if target.exists():
        if not force:
            raise OutputError(f"output {path} exists (use --force to overwrite)")
        if not os.stat(target).st_mode & 0o222 or not os.access(target, os.W_OK):  # the mode bits, even for root
            raise OutputError(f"output {path} is read-only (not replaced, even with --force)")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable")


def describe(exc: OSError) -> str:
    """The cause of a failed read or write, in a few words (``permission denied``, ``no space left on device`` …)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EFBIG:
        return "file too large (a file-size limit or the file system's)"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_open(path: Path, force: bool = False, inputs=()) -> Iterator[BinaryIO]:
    """Open a temporary file that becomes ``path`` when the block exits without error.

    Every ``OSError`` of the writing becomes an ``OutputError`` naming ``path`` (errors raised by
    the block's own work pass through unchanged)."""
    path = Path(path)
    check_writable(path, force, inputs)
    target = _target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe(exc)}") from None
    f = os.fdopen(fd, "wb")
    try:
        yield _Guarded(f, path)
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            if force:
                mode = (os.stat(target).st_mode & 0o7777) if target.exists() else (0o666 & ~_UMASK)
                os.chmod(tmp, mode)  # mkstemp makes 0600; outputs get the usual (or the replaced file's) mode
                os.replace(tmp, target)
            else:
                os.chmod(tmp, 0o666 & ~_UMASK)
                _publish_new(tmp, target, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {describe(exc)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish_new(tmp: str, target: Path, path: Path) -> None:
    """Give the complete temporary file the name ``target``, which must not exist: a hard link
    fails if the name was taken meanwhile (by another run, or a user), so nothing is clobbered even
    by a writer that checked at the same moment. Where the file system has no hard links, the name
    is claimed by creating it exclusively (``O_EXCL``) and then replaced."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputError(f"output {path} exists (use --force to overwrite)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise OutputError(f"output {path} exists (use --force to overwrite)") from None
        os.replace(tmp, target)
        return
    with contextlib.suppress(OSError):  # the output is complete: a leftover temporary file is harmless
        os.unlink(tmp)


class _Guarded:
    """The temporary file, whose ``write`` turns an ``OSError`` (full disk …) into an ``OutputError``."""

    def __init__(self, f: BinaryIO, path: Path):
        self._f, self._path = f, path

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write {self._path}: {describe(exc)}") from None

    def __getattr__(self, name):
        return getattr(self._f, name)


def write_bytes_atomic(path: Path, data: bytes, force: bool = False, inputs=()) -> None:
    write_atomic(path, lambda f: f.write(data), force, inputs)


def write_atomic(path: Path, writer: Callable[[BinaryIO], None], force: bool = False, inputs=()) -> None:
    try:
        with atomic_open(path, force, inputs) as f:
            writer(f)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {describe(exc)}") from None
