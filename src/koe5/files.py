"""How koe5 writes files and folders so that a crash never leaves half of one: temporary, then renamed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(dst: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``dst``; rename it to ``dst`` if the block succeeds.

    On any exception (or interruption) the temporary folder is removed and ``dst`` is untouched.
    With ``replace`` an existing ``dst`` is swapped out only after the new one is complete.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make a shared cache unreadable
    try:
        yield tmp
        if dst.exists() and not replace:
            raise FileExistsError(f"{dst} already exists")
        swap_into_place(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_into_place(src: Path, dst: Path) -> None:
    """Rename the complete folder ``src`` to ``dst``; a folder already at ``dst`` is moved aside
    only at that moment and removed afterwards, so ``dst`` is never missing or half-written."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / "x")
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        # mkstemp's 0600 is right for a temporary file, not for the result: the file gets the mode a
        # plain open() would give it
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def writer_lock(dst: str | Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``dst`` (a file ``.<name>.lock`` beside it) for the block. A second
    process waits, or with ``wait=False`` gets :class:`~koe5.errors.BusyError` naming the holder. The
    operating system releases the lock when a holder dies, so a killed writer never leaves it behind."""
    import fcntl
    import socket
    import time

    from koe5.errors import BusyError

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst.parent / f".{dst.name}.lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().decode("utf-8", "replace").strip() or "a process that did not say who it is"
            raise BusyError(f"{dst} is being written by another process: {holder}") from None
        try:
            fh.truncate(0)
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode())
            fh.flush()
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def leftovers(dst: str | Path) -> list[Path]:
    """The temporary folders and files beside ``dst`` that a write into ``dst`` makes and removes."""
    dst = Path(dst)
    return sorted(p for kind in ("tmp", "old") for p in dst.parent.glob(f".{dst.name}.{kind}-*"))


def remove_leftovers(dst: str | Path) -> list[Path]:
    """Remove the temporary folders and files that an interrupted :func:`atomic_dir`,
    :func:`swap_into_place` or :func:`atomic_write_bytes` for ``dst`` left beside it (a killed process
    runs no cleanup). Only while holding :func:`writer_lock` on ``dst``: then no one else is writing."""
    found = leftovers(dst)
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    """The process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
