"""The synthesize stage: a teacher writes the target text of every (entity, task) the ELM trains on.

    synthesize/<v>/examples.parquet      one accepted target per row: kind, entity_id, partner_id, task, split,
                                         title, elm_prompt, teacher_prompt, target, changed, teacher, gen_settings
    synthesize/<v>/rejected.parquet      what target checks threw away, with the raw text and the reason
    synthesize/<v>/reference_sc.parquet  per task, on held-out movies: SC of the teacher's targets against the
                                         movie's semantic vector (truth) and against a random other's (random)

Which rows: elm/synth/plan.py. The teachers: elm/synth/teachers/. The checks every target passes:
elm/synth/checks.py. The reference SC table: elm/synth/reference.py.

Generation runs in chunks written to the version's work folder; an interrupted run resumes at the first
missing chunk and never regenerates a finished one (ArtifactStore.produce(resumable=True)).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from elm import vectors as vec
from elm import workparts
from elm.artifacts import Artifact, ArtifactStore, WorkDir
from elm.embed.semantic import DEFAULT_ENCODER
from elm.embed.spaces import SPACE_STAGES
from elm.embed.splits import HELDOUT
from elm.lineage import StageSpec, publish
from elm.model.base_lm import LOAD_LOCK
from elm.synth.catalog import Task, render_elm_prompt, render_teacher_prompt, select_tasks
from elm.synth.checks import check_target, title_variants
from elm.synth.config import SynthesisConfig, SynthesisError, max_tokens, teacher_id
from elm.synth.plan import plan
from elm.synth.reference import reference_sc, reference_table
from elm.synth.teachers import BACKENDS
from elm.synth.teachers.base import ChatTeacher

log = logging.getLogger(__name__)

SYNTHESIZE = StageSpec("synthesize", inputs=("ingest", "splits", *SPACE_STAGES),
                       files=("examples.parquet", "rejected.parquet", "reference_sc.parquet"),
                       code_version="4")
# 2: alternate titles in parentheses count as naming the movie; 3: a profile names the user's best-known
# favourites, second (user_facts, template teacher); 4: negative_review and convince_skeptic state decade
# and genres in their first sentence (template teacher)
CHUNKS = "chunks"


# -----------------------------------------------------------------------------
# generating


def make_teacher(cfg: SynthesisConfig, store: ArtifactStore):
    """The teacher object for cfg (elm/synth/teachers/__init__.py): a ChatTeacher or a facts teacher."""
    return BACKENDS[cfg.teacher].build(cfg.settings(), store)


def _prompts(items: pd.DataFrame, facts: dict[str, dict[int, dict]]) -> list[tuple[Task, dict, dict | None]]:
    out = []
    for r in items.itertuples():
        task = select_tasks([r.task])[0]
        own = facts[r.kind][r.entity_id]
        partner = facts["movie"][int(r.partner_id)] if pd.notna(r.partner_id) else None
        out.append((task, own, partner))
    return out


def generate_chunk(items: pd.DataFrame, facts: dict[str, dict[int, dict]], teacher, cfg: SynthesisConfig,
                   seed: int) -> pd.DataFrame:
    """Targets for one chunk of items, checked; rejected rows keep their raw text and reason."""
    jobs = _prompts(items, facts)
    teacher_prompts = [render_teacher_prompt(t, own, partner) for t, own, partner in jobs]
    limits = [max_tokens(t, cfg) for t, _, _ in jobs]
    if not isinstance(teacher, ChatTeacher):  # a facts teacher writes from the facts, not from a prompt
        raw = []
        for t, own, partner in jobs:
            try:
                raw.append(teacher.generate(t, own, partner))
            except ValueError as e:  # an entity the facts cannot describe: rejected, not fatal
                log.warning("template teacher: %s", e)
                raw.append("")
    else:
        raw = teacher.complete(teacher_prompts, limits, seed=seed)
    out = []
    for (t, own, partner), prompt, limit, text in zip(jobs, teacher_prompts, limits, raw):
        avoid = () if "user" in t.slots else tuple(
            v for f in (own, partner) if f is not None for v in title_variants(f["name"]))
        checked = check_target(text, max_tokens=limit, avoid=avoid, prompt=prompt)
        out.append({"title": own.get("title") or f"user {own.get('userId')}", "elm_prompt": render_elm_prompt(t), "teacher_prompt": prompt,
                    "raw_target": text, "target": checked.text, "reason": checked.reason,
                    "changed": ",".join(checked.changed)})
    return pd.concat([items.reset_index(drop=True), pd.DataFrame(out)], axis=1)


def n_chunks(n_items: int, chunk_size: int) -> int:
    return (n_items + chunk_size - 1) // chunk_size


def chunk_seed(cfg: SynthesisConfig, i: int) -> int:
    """The sampling seed of chunk i: the same text wherever and whenever the chunk is generated."""
    return cfg.seed * 1_000_003 + i


ChunkMapper = workparts.Mapper
"""``map_chunks(indices, versions, cfg, store_root, folder)``: run ``run_chunk(i, versions, cfg, store_root,
folder)`` for every index, anywhere (threads, a Dask cluster), and return once all are written."""

def run_chunk(i: int, versions: dict[str, str], cfg: SynthesisConfig, store_root: str, folder: str) -> str:
    """Chunk i from picklable arguments, in whatever process runs it: resolves the inputs by version,
    recomputes the plan (kept per thread for the next chunk, with the teacher), generates the chunk and
    writes it atomically into ``folder``. Returns the chunk's path."""
    def load():
        store = ArtifactStore(store_root)
        arts = {k: store.resolve(k, v) for k, v in versions.items()}
        with LOAD_LOCK:  # a local teacher loads a model; other threads may be loading theirs
            return (*plan(arts, cfg), make_teacher(cfg, store))

    items, facts, teacher = workparts.thread_cached(("synthesize", str(store_root), tuple(sorted(versions.items())), cfg),
                                                    load)
    part = items.iloc[i * cfg.chunk_size:(i + 1) * cfg.chunk_size]
    return str(workparts.write_part(generate_chunk(part, facts, teacher, cfg, seed=chunk_seed(cfg, i)), folder, i))


def synthesize(arts: dict[str, Artifact], cfg: SynthesisConfig, store: ArtifactStore,
               teacher=None, map_chunks: ChunkMapper | None = None) -> tuple[Artifact, bool]:
    """The synthesize artifact for the ingest, splits, semantic and behavioral artifacts given.

    teacher: an already built teacher (tests, or a caller that reuses one); default make_teacher(cfg).
    map_chunks: generates the missing chunks elsewhere (see ChunkMapper; the Prefect flow hands them to a
    task runner); None generates them here, one after another.
    """
    missing = set(SYNTHESIZE.inputs) - set(arts)
    if missing:
        raise SynthesisError(f"synthesize needs the artifacts {sorted(missing)} too")
    tid = teacher_id(cfg)
    inputs = {k: arts[k].version for k in SYNTHESIZE.inputs}

    def build(work: WorkDir) -> None:
        items, facts = plan(arts, cfg)
        semantic = vec.read(arts["semantic"].file("movies.parquet"))
        log.info("synthesize: %d rows (%s) with the %s teacher", len(items),
                 ", ".join(f"{k} {v}" for k, v in items.groupby(["kind", "split"]).size().items()), tid)
        state = {"teacher": teacher}

        def generate(part: pd.DataFrame, i: int) -> pd.DataFrame:
            if state["teacher"] is None:  # loaded only when something is left to generate
                state["teacher"] = make_teacher(cfg, store)
            return generate_chunk(part, facts, state["teacher"], cfg, seed=chunk_seed(cfg, i))

        t0 = time.perf_counter()
        folder, size = work.path / CHUNKS, cfg.chunk_size
        names = list(range(n_chunks(len(items), size)))
        todo = workparts.missing(names, folder, "synthesize")
        if todo and map_chunks is None:
            workparts.run_here(todo, folder, lambda i: generate(items.iloc[i * size:(i + 1) * size], i),
                               "synthesize", total=len(items), unit="ex",
                               size=lambda i: len(items.iloc[i * size:(i + 1) * size]))
        elif todo:
            map_chunks(todo, inputs, cfg, str(store.root), str(folder))
        try:
            rows = workparts.read_parts(names, folder, "synthesize")
        except workparts.MissingPartsError as e:
            raise SynthesisError(str(e)) from None
        gen_seconds = time.perf_counter() - t0
        if made := sum(len(items.iloc[i * size:(i + 1) * size]) for i in todo):
            log.info("synthesize: generated %d rows in %.1f s (%.2f rows/s)", made, gen_seconds,
                     made / max(gen_seconds, 1e-9))
        rows["teacher"] = tid
        rows["gen_settings"] = json.dumps({"teacher": cfg.teacher, **cfg.teacher_settings(),
                                           "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}, sort_keys=True)
        ok = rows["reason"].isna()
        accepted, rejected = rows[ok].drop(columns=["reason", "raw_target"]), rows[~ok]
        reasons = rejected["reason"].value_counts().to_dict()
        if accepted.empty:
            raise SynthesisError(f"every one of {len(rows)} targets was rejected ({reasons}); nothing published. "
                                 f"Generated chunks are kept in {work.path / CHUNKS}")
        if reasons:
            log.warning("synthesize: rejected %d of %d targets: %s", len(rejected), len(rows), reasons)
        empty_tasks = sorted(set(items["task"]) - set(accepted["task"]))
        if empty_tasks:
            log.warning("synthesize: no accepted target at all for task(s) %s", empty_tasks)

        ref = reference_sc(accepted, semantic, arts["semantic"].manifest["config"].get("encoder", DEFAULT_ENCODER),
                           cfg.seed)
        accepted.to_parquet(work.path / "examples.parquet", index=False)
        rejected.to_parquet(work.path / "rejected.parquet", index=False)
        ref.to_parquet(work.path / "reference_sc.parquet", index=False)
        workparts.remove(folder)
        words = accepted["target"].str.split().str.len()
        work.summary.update(
            teacher=tid, rows=len(rows), accepted=len(accepted), rejected=reasons,
            cleaned=accepted["changed"].str.split(",").explode().replace("", np.nan).dropna().value_counts().to_dict(),
            by_split={f"{k}/{sp}": int(n) for (k, sp), n in accepted.groupby(["kind", "split"]).size().items()},
            tasks=int(accepted["task"].nunique()), mean_target_words=round(float(words.mean()), 1),
            generate_seconds=round(gen_seconds, 1),
            reference_sc=ref.round(4).to_dict("records"),
        )

    return publish(store, SYNTHESIZE, arts, cfg.version_config(), build, resumable=True)


def report(art: Artifact) -> str:
    """What a synthesize artifact holds: counts, rejections, the reference SC table, one sample per task."""
    s = art.summary
    lines = [f"synthesize {art.version} ({s.get('teacher')}): {s.get('accepted')} targets of {s.get('rows')} "
             f"rows; rejected {s.get('rejected') or 'none'}; {s.get('tasks')} tasks; "
             f"{s.get('mean_target_words')} words per target on average"]
    lines.append(reference_table(pd.read_parquet(art.file("reference_sc.parquet")), s.get("teacher", "")))
    return "\n".join(lines)


def samples(art: Artifact, per_task: int = 1, split: str = HELDOUT) -> pd.DataFrame:
    """A few targets per task (for notes and reports)."""
    ex = pd.read_parquet(art.file("examples.parquet"))
    ex = ex[ex["split"] == split] if (ex["split"] == split).any() else ex
    return ex.groupby("task", sort=False).head(per_task)[["task", "title", "target"]]
