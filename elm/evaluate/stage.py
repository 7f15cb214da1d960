"""The ``evaluate`` stage: a trained ELM against its references (docs/METHOD.md, "Metrics" and "Experiments").

Experiments, each a set of generated texts scored with SC (elm.metrics.semantic_consistency) and BC
(elm.metrics.behavioral_consistency):

    generalisation  every task on held-out movies and users (and a sample of training ones, for the gap):
                    the ELM's text ("elm"), the teacher's target ("truth") and the text-only base LLM
                    prompted with titles ("baseline", elm.evaluate.baseline).
    interpolation   movie pairs (Forrest Gump and others) and user pairs mixed at weights a
                    (elm.evaluate.interpolation); SC of the ELM's summary against the mixed vector, the baseline asked
                    to blend the two titles; user mixes scored with BC.
    cav             concept activation vectors (elm.evaluate.cav) for soft attributes, in the ELM's movie space and
                    in the user space; entities moved by alpha standard deviations along the CAV; SC/BC of
                    the text against the moved vector and the attribute's probability in the text (the
                    attribute's classifier in the semantic space applied to the encoded text).

References, measured the same way in the same run: ``random`` (for SC, a text's mean score against every other
entity's vector of the same task; for BC, a random ranking) and ``truth`` (the teacher's text), and the
normalised score (x - random) / (truth - random): 0 is chance, 1 is as good as the teacher. Held-out movie
texts are scored a second time with another encoder (elm.evaluate.second_encoder).

Files of an evaluate version (schema in the docstrings of elm/evaluate/scoring.py, controls.py and tables.py; the report
stage reads them):
    generations.parquet       one row per scored text: every number traces back to a text (sc2: the
                              second encoder's SC)
    scores.parquet            generalisation, per split x task x metric, with references
    controls.parquet          does the text follow the vector: specificity, shuffled controls, distinct texts,
                              facts read back, each with a bootstrap interval (elm/evaluate/controls.py)
    interpolation.parquet     per pair x weight x system
    cav.parquet               per space x attribute x alpha
    cav_classifiers.parquet   the CAVs' classifier accuracy on held-out entities
    eval_config.json          the EvalConfig
Interrupted runs resume: each finished part is kept in the version's work folder until publishing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace

import pandas as pd

from elm.artifacts import Artifact, ArtifactStore, WorkDir
from elm.embed.splits import HELDOUT
from elm.evaluate.cav import CAV
from elm.evaluate.config import EVALUATE, EvalConfig, EvaluationError, selected_tasks
from elm.evaluate.context import load_context
from elm.evaluate.controls import controls, controls_summary
from elm.evaluate.experiments import fit_cavs
from elm.evaluate.parts import PartMapper, compute_part, part_names, run_parts
from elm.evaluate.second_encoder import second_encoder_scores
from elm.embed.semantic import DEFAULT_ENCODER, load_encoder
from elm.lineage import publish
from elm.model.base_lm import inference_dtype
from elm.evaluate.tables import aggregate_cav, aggregate_interpolation, aggregate_scores, headline, reference_levels
from elm.serve.describe import Describer

PARTS = "parts"
log = logging.getLogger(__name__)
CONFIG_FILE = "eval_config.json"


def evaluate(arts: dict[str, Artifact], cfg: EvalConfig, store: ArtifactStore, describer: Describer | None = None,
             map_parts: PartMapper | None = None) -> tuple[Artifact, bool]:
    """The evaluate artifact of a train artifact (arts from resolve_inputs). ``describer``: an already
    loaded ELM for arts["train"] (tests). ``map_parts``: runs the parts elsewhere (see PartMapper; the
    Prefect flow hands them to a task runner); None runs them here, one after another. Either way the CAVs
    are fitted first (fail fast) and parts an interrupted run finished are not run again."""
    if missing := set(EVALUATE.inputs) - set(arts):
        raise EvaluationError(f"evaluate needs the artifacts {sorted(missing)} too (see resolve_inputs)")
    examples = pd.read_parquet(arts["synthesize"].file("examples.parquet"), columns=["split", "task", "kind"])
    if not (examples["split"] == HELDOUT).any():
        raise EvaluationError(f"the synthesize artifact {arts['synthesize'].version} has no held-out examples: "
                              "nothing to evaluate generalisation on (synthesize with heldout_movies > 0)")
    tasks = selected_tasks(cfg, examples)
    if cfg.second_encoder and same_encoder(cfg.second_encoder, arts["semantic"]):
        raise EvaluationError(f"second_encoder {cfg.second_encoder!r} is the encoder that made the semantic vectors "
                              f"(semantic/{arts['semantic'].version}): choose another model, or none")
    inputs = {k: arts[k].version for k in EVALUATE.inputs}
    cfg = replace(cfg, dtype=inference_dtype(cfg.dtype))  # the dtype that ran, not "auto", names the version

    def build(work: WorkDir) -> None:
        t0 = time.perf_counter()
        ctx = load_context(arts, cfg, store, describer)
        cavs, classifiers = fit_cavs(ctx) if cfg.cav_attributes and (cfg.cav_movies or cfg.cav_users) \
            else ({}, pd.DataFrame(columns=list(CAV.ROW_COLUMNS)))
        names = part_names(cfg, list(cavs))
        folder = work.path / PARTS
        folder.mkdir(parents=True, exist_ok=True)
        gens = run_parts(names, folder, lambda name: compute_part(ctx, name, tasks, cavs), map_parts, inputs, cfg,
                         str(store.root))
        if cfg.second_encoder:
            t1 = time.perf_counter()
            gens = second_encoder_scores(gens, pd.read_parquet(arts["semantic"].file("documents.parquet")),
                                         load_encoder(cfg.second_encoder, store=store))
            log.info("evaluate: second SC encoder %s: %d texts in %.1f s", cfg.second_encoder,
                     int(gens["sc2"].notna().sum()), time.perf_counter() - t1)

        scores = aggregate_scores(gens)
        refs = reference_levels(scores)
        interp, cav = aggregate_interpolation(gens, refs), aggregate_cav(gens, refs)
        gens.to_parquet(work.path / "generations.parquet", index=False)
        scores.to_parquet(work.path / "scores.parquet", index=False)
        ctrl = controls(gens, ctx.movies, cfg.seed)
        ctrl.to_parquet(work.path / "controls.parquet", index=False)
        interp.to_parquet(work.path / "interpolation.parquet", index=False)
        cav.to_parquet(work.path / "cav.parquet", index=False)
        classifiers.to_parquet(work.path / "cav_classifiers.parquet", index=False)
        (work.path / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        shutil.rmtree(folder)
        work.summary.update(model=f"train/{arts['train'].version}", texts=len(gens),
                            by_experiment={f"{e}/{sy}": int(n) for (e, sy), n
                                           in gens.groupby(["experiment", "system"]).size().items()},
                            seconds=round(time.perf_counter() - t0, 1),
                            headline=headline(scores, cav, classifiers),
                            controls=controls_summary(ctrl))

    return publish(store, EVALUATE, arts, cfg.to_dict(), build, resumable=True)


def same_encoder(name: str, semantic: Artifact) -> bool:
    first = semantic.manifest["config"].get("encoder", DEFAULT_ENCODER)
    short = lambda n: n.rstrip("/").rsplit("/", 1)[-1].lower()  # noqa: E731
    return short(name) == short(first)


def report(art: Artifact) -> str:
    """The held-out per-task table and the headline, as text (``elm evaluate`` prints it)."""
    scores = pd.read_parquet(art.file("scores.parquet"))
    held = scores[(scores["split"] == HELDOUT)]
    lines = [f"evaluate {art.version} (model {art.summary.get('model')}, {art.summary.get('texts')} texts, "
             f"{art.summary.get('seconds')} s)",
             f"{'task':<30} {'metric':>6} {'n':>3} {'elm':>7} {'baseline':>8} {'truth':>7} {'random':>7} "
             f"{'elm norm':>8} {'base norm':>9}"]
    for r in held.itertuples():
        lines.append(f"{r.task:<30} {r.metric:>6} {r.n:>3} {r.elm:>7.3f} {r.baseline:>8.3f} {r.truth:>7.3f} "
                     f"{r.random:>7.3f} {r.elm_normalised:>8.2f} {r.baseline_normalised:>9.2f}")
    h = art.summary.get("headline", {})
    lines.append(f"mean normalised SC over held-out movie tasks: ELM {h.get('heldout_sc_normalised', {}).get('elm')}, "
                 f"text-only baseline {h.get('heldout_sc_normalised', {}).get('baseline')}")
    if "profile_bc" in h:
        lines.append(f"user profiles BC@{art.manifest['config'].get('bc_k')}: {h['profile_bc']}")
    return "\n".join(lines).replace(" nan", " ---").replace("nan ", "--- ")
