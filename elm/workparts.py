"""Work split into parts: each part is one Parquet file in a work folder, written atomically.

Synthesis (chunks of rows for the teacher) and evaluation (generalisation, baseline, interpolation, one
CAV attribute) both run long, and both must survive a kill and may run their parts elsewhere (threads, a
Dask cluster). The rule is the same for both, so it lives here once:

- a part is done when its file exists; it is written under a temporary name unique to the process and
  thread, then renamed, so neither a reader, a resumed run nor a second worker ever sees half a file;
- a resumed run computes only the parts whose files are missing (``missing``);
- parts can be computed here (``run_here``) or handed to a ``Mapper`` that runs them anywhere that sees
  the folder, after which ``read_parts`` checks that every part arrived.

A part is named by an int (chunk index: ``000012.parquet``) or a string (``cav/genre:Horror`` becomes
``cav__genre_Horror.parquet``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

PartName = int | str

Mapper = Callable[[list, dict[str, str], Any, str, str], None]
"""``map_parts(names, versions, cfg, store_root, folder)``: compute every named part anywhere (threads,
processes, a cluster) and return once all are written into ``folder``, raising if one failed. Only picklable
values cross: inputs travel as artifact versions, and each worker loads what it needs itself."""


class MissingPartsError(RuntimeError):
    """Parts that should have been written are not in the folder."""


def part_path(folder: str | os.PathLike, name: PartName) -> Path:
    stem = f"{name:06d}" if isinstance(name, int) else name.replace("/", "__").replace(":", "_")
    return Path(folder) / f"{stem}.parquet"


def write_part(df: pd.DataFrame, folder: str | os.PathLike, name: PartName) -> Path:
    """Write one part atomically (see the module docstring) and return its path."""
    path = part_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp"
    df.to_parquet(tmp, index=False)
    return tmp.replace(path)


def missing(names: Sequence[PartName], folder: str | os.PathLike, label: str) -> list[PartName]:
    """The parts still to compute, in order; says how many an interrupted run left done."""
    todo = [n for n in names if not part_path(folder, n).exists()]
    if len(todo) < len(names):
        log.info("%s: resuming, %d of %d parts already done in %s", label, len(names) - len(todo), len(names),
                 folder)
    return todo


def run_here(names: Sequence[PartName], folder: str | os.PathLike, compute: Callable[[PartName], pd.DataFrame],
             label: str, total: int | None = None, size: Callable[[PartName], int] | None = None,
             unit: str = "part") -> None:
    """Compute and write the named parts here, one after another, with a progress bar.

    ``size``: how many units a part holds (rows of a chunk), so the bar counts units rather than parts;
    ``total``: the units of the whole job, done ones included (the bar starts where a resumed run is).
    """
    from tqdm.auto import tqdm

    size = size or (lambda _: 1)
    left = sum(size(n) for n in names)
    total = left if total is None else total
    with tqdm(total=total, initial=total - left, desc=label, unit=unit, disable=None) as bar:
        for name in names:
            bar.set_postfix_str(str(name))
            t0 = time.perf_counter()
            df = compute(name)
            write_part(df, folder, name)
            log.debug("%s: part %s, %d rows in %.1f s", label, name, len(df), time.perf_counter() - t0)
            bar.update(size(name))


def read_parts(names: Sequence[PartName], folder: str | os.PathLike, label: str,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every named part, concatenated in order. Raises MissingPartsError naming those not written."""
    if absent := [n for n in names if not part_path(folder, n).exists()]:
        raise MissingPartsError(f"{label}: parts {absent[:5]}{' ...' if len(absent) > 5 else ''} were not written "
                                f"to {folder} (did the mapper run them?)")
    frames = [f for f in (pd.read_parquet(part_path(folder, n)) for n in names) if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns or []))
    return pd.concat(frames, ignore_index=True)


_local = threading.local()


def thread_cached(key: tuple, load: Callable[[], Any]) -> Any:
    """``load()``, kept for this thread's next part with an equal ``key`` (the job: store, input versions,
    config). A worker runs several parts of one job and loading its models takes seconds. One value per
    thread, and only the last: a loaded model is not shared by concurrent generate calls (thread runners),
    and a long-lived worker moves on to other jobs."""
    if getattr(_local, "key", None) != key:
        _local.key = _local.value = None
        _local.value, _local.key = load(), key
    return _local.value


def remove(folder: str | os.PathLike) -> None:
    """Delete the parts folder once its contents are in the published files."""
    folder = Path(folder)
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
