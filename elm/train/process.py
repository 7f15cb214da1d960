"""The training subprocess's life: it dies with the ``elm train`` that started it, and one trainer at a time
works in a work folder.

``kill -9`` of ``elm train`` gives it no chance to stop its children, and the launcher runs in its own process
group (so that Ctrl-C reaches it only through us). Linux's parent-death signal covers that: the launcher is
killed when ``elm train`` dies, and each training process when the launcher dies. The work-folder lock
covers the rest (another OS, a launcher that outlives us anyway): it is held by ``elm train`` and inherited
by the launcher, so a second ``elm train`` on the same folder refuses to start and names the holder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

from elm.train.config import TrainingError

DIE_WITH_PARENT_ENV = "ELM_DIE_WITH_PARENT"
"""Set for processes started by ``elm train``: elm.train.script then dies with its launcher. Not set when the
script is run by hand (a `nohup` run must outlive its shell)."""
LOCK_FILE = ".trainer.pid"
FAILURE_MARK = "training failed: "
"""Marks the training script's own error line (cause and fix) in its output, so that ``elm train`` can repeat
it as the last line of its error, below the launcher's traceback."""
_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def parent_death_hook(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when the calling process dies (None where the OS
    has no such thing). libc is looked up here, before the fork: loading a library in a forked child of a
    threaded process can deadlock."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return hook


def die_with_parent_if_asked(sig: int = signal.SIGKILL) -> None:
    """In a training process: die when the process that launched it does, when ``elm train`` asked for it."""
    if os.environ.get(DIE_WITH_PARENT_ENV) != "1" or (prctl := _prctl()) is None:
        return
    parent = os.getppid()
    prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


@contextlib.contextmanager
def work_lock(folder: Path) -> Iterator[int]:
    """Hold the trainer lock of a work folder; yields its file descriptor (pass it to the launcher so the lock
    lives as long as any of them). TrainingError naming the holding process when another trainer has it."""
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise TrainingError(f"another trainer is working in {folder} ({holder}); wait for it to finish, or stop "
                            f"it, then run again") from None
    try:
        note(fd, f"pid {os.getpid()} (elm train)")
        yield fd
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # before letting go, so that no one locks a file that is about to vanish
        os.close(fd)


def note(fd: int, text: str) -> None:
    """Replace what the lock file says about its holder."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, (text + "\n").encode(), 0)


def failure_line(e: BaseException) -> str:
    """The line the training script logs for an error it knows (a CheckpointError and its fix)."""
    return f"{FAILURE_MARK}{type(e).__name__}: {e}"


def failure_in(line: str) -> str | None:
    """The error of a ``failure_line`` in a line of the training output (after the log prefix), else None."""
    return line.split(FAILURE_MARK, 1)[1] if FAILURE_MARK in line else None
