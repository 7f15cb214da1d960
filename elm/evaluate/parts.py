"""Parts: the units of work of an evaluation (generalisation per split, the baseline, each interpolation, one
per CAV attribute). Each is one Parquet file in the version's work folder (elm/workparts.py), so a part runs
once (an interrupted run resumes) and can run anywhere that sees the store (run_part, map_parts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from elm import workparts
from elm.artifacts import ArtifactStore
from elm.embed.splits import HELDOUT, TRAIN
from elm.evaluate.cav import CAV
from elm.evaluate.config import EvalConfig, EvaluationError, selected_tasks
from elm.evaluate.context import Context, load_context, resolve_inputs
from elm.evaluate.experiments import (baseline_part, cav_part, fit_attribute_cavs, generalisation_part,
                                      interpolation_movie_part, interpolation_user_part)
from elm.evaluate.scoring import GEN_COLUMNS
from elm.model.base_lm import LOAD_LOCK

log = logging.getLogger(__name__)

PartMapper = workparts.Mapper
"""``map_parts(names, versions, cfg, store_root, folder)``: run ``run_part(name, versions, cfg, store_root,
folder)`` for every name, anywhere (threads, processes, a cluster), and return once all are written, raising if
one failed. Only picklable values cross: inputs travel as versions, and each process loads its own Context."""


def part_names(cfg: EvalConfig, attributes: Sequence[str]) -> list[str]:
    """The parts of an evaluation, in the order they run here; ``attributes``: the CAV keys (fit_cavs)."""
    names = [f"generalisation/{split}" for split in ([HELDOUT, TRAIN] if cfg.train_per_task else [HELDOUT])]
    if cfg.baseline:
        names.append("generalisation/baseline")
    if cfg.movie_pairs:
        names.append("interpolation/movies")
    if cfg.user_pairs:
        names.append("interpolation/users")
    return names + [f"cav/{key}" for key in attributes]


def compute_part(ctx: Context, name: str, tasks: Sequence[str], cavs: dict[str, dict[str, CAV]]) -> pd.DataFrame:
    """The generations of one named part. The part functions are looked up in this module at call time
    (tests replace them)."""
    kind, _, arg = name.partition("/")
    if name == "generalisation/baseline":
        return baseline_part(ctx, tasks)
    if kind == "generalisation" and arg in (HELDOUT, TRAIN):
        return generalisation_part(ctx, arg, tasks)
    if name == "interpolation/movies":
        return interpolation_movie_part(ctx)
    if name == "interpolation/users":
        return interpolation_user_part(ctx)
    if kind == "cav":
        return cav_part(ctx, arg, cavs[arg])
    raise EvaluationError(f"unknown evaluation part {name!r}")


def _logged(compute: Callable[[str], pd.DataFrame]) -> Callable[[str], pd.DataFrame]:
    def run(name: str) -> pd.DataFrame:
        t0 = time.perf_counter()
        df = compute(name)
        log.info("evaluate: %s: %d texts in %.1f s", name, len(df), time.perf_counter() - t0)
        return df

    return run


def _context(store_root: str, versions: dict[str, str], cfg: EvalConfig) -> Context:
    """The Context of these inputs, kept for the thread's next part (workparts.thread_cached)."""
    def load() -> Context:
        store = ArtifactStore(store_root)
        arts = resolve_inputs(store, versions["train"], {k: v for k, v in versions.items() if k != "train"})
        with LOAD_LOCK:  # the baseline LM loads later, under the same lock (TextBaseline)
            return load_context(arts, cfg, store)

    return workparts.thread_cached(("evaluate", str(store_root), tuple(sorted(versions.items())), cfg), load)


def run_part(name: str, versions: dict[str, str], cfg: EvalConfig, store_root: str, folder: str) -> str:
    """One part from picklable arguments, in whatever process runs it (a map_parts worker): resolves the
    inputs by version in the store at ``store_root``, loads (or reuses) the Context, computes the part (a CAV
    part fits its own attribute's CAVs) and writes it into ``folder``. Returns the file's path."""
    ctx = _context(store_root, versions, cfg)
    tasks = selected_tasks(cfg, ctx.examples)
    kind, _, key = name.partition("/")
    cavs = {key: fit_attribute_cavs(ctx, key)} if kind == "cav" else {}
    return str(workparts.write_part(_logged(lambda n: compute_part(ctx, n, tasks, cavs))(name), folder, name))


def run_parts(names: Sequence[str], folder: Path, compute: Callable[[str], pd.DataFrame],
              map_parts: PartMapper | None, versions: dict[str, str], cfg: EvalConfig, store_root: str) -> pd.DataFrame:
    """Every named part's generations: those an interrupted run finished are kept, the others computed here
    one after another (``map_parts`` None) or handed to ``map_parts``; then all of them, in order."""
    todo = workparts.missing(names, folder, "evaluate")
    if todo and map_parts is None:
        workparts.run_here(todo, folder, _logged(compute), "evaluate")
    elif todo:
        map_parts(todo, versions, cfg, store_root, str(folder))
    try:
        return workparts.read_parts(names, folder, "evaluate", columns=GEN_COLUMNS)
    except workparts.MissingPartsError as e:
        raise EvaluationError(str(e)) from None
