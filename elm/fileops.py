"""Files on disk for the artifact store: hashing (once per file state in a process), the modes published
files get, and errors that say which path could not be written and why."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict[tuple, str] = {}
_VERIFIED_LOCK = threading.Lock()


def cached_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per (path, inode, size, mtime) in this process: a stage that opens the
    same input several times, or a cache hit that checks a whole version, pays for one read."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _VERIFIED_LOCK:
        got = _VERIFIED.get(key)
    if got is None:
        got = sha256_file(path)
        with _VERIFIED_LOCK:
            _VERIFIED[key] = got
    return got


WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EROFS: "the file system is read-only"}
"""OSErrors that mean the store cannot be written (not that an input is bad)."""


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_errno(e: BaseException) -> int | None:
    """The errno of an error that means "cannot write here" (disk full, permissions), else None. Some writers
    (Arrow, DuckDB) keep the OS's reason only in their message."""
    code = getattr(e, "errno", None)
    if code in WRITE_ERRORS:
        return code
    text = str(e)
    return next((c for c in WRITE_ERRORS if os.strerror(c) in text), None)


def write_error(e: BaseException, path: Path, kept: str) -> str:
    """One line: which path could not be written, why, what was left, what to do."""
    what = WRITE_ERRORS.get(write_errno(e) or 0, str(e))
    return (f"cannot write {getattr(e, 'filename', None) or path}: {what}; nothing was published, {kept}. "
            f"Free space or fix the permissions there, then run again")


def default_mode(folder: Path) -> int:
    """The mode a new file gets here under the process umask (found by making one: reading the umask with
    os.umask would change it for every thread for a moment)."""
    probe = folder / f".mode-probe-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o666)
    try:
        return os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)
        probe.unlink()


def readable_like_the_rest(folder: Path) -> None:
    """Give every published file and folder the umask's mode: temporary folders (0700) and some writers'
    files (safetensors, 0600) would otherwise be unreadable to the other users of a shared store."""
    file_mode = default_mode(folder)
    dir_mode = file_mode | ((file_mode & 0o444) >> 2)  # x wherever r: folders must be enterable
    os.chmod(folder, dir_mode)
    for p in folder.rglob("*"):
        if p.is_symlink():
            continue
        if p.is_dir():
            os.chmod(p, dir_mode)
        else:
            os.chmod(p, file_mode | (p.stat().st_mode & 0o111 & dir_mode))
