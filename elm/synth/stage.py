"""The synthesize stage: a teacher writes the target text of every (entity, task) the ELM trains on.

    synthesize/<v>/examples.parquet      one accepted target per row: kind, entity_id, partner_id, task, split,
                                         title, elm_prompt, teacher_prompt, target, changed, teacher, gen_settings
    synthesize/<v>/rejected.parquet      what target checks threw away, with the raw text and the reason
    synthesize/<v>/reference_sc.parquet  per task, on held-out movies: SC of the teacher's targets against the
                                         movie's semantic vector (truth) and against a random other's (random)

Which entities: a seeded sample of each split (sizes are config, so the embedded default fits its time
budget). Training movies get `tasks_per_movie` tasks each, sampled per movie: more distinct vectors
teach an adapter more than more tasks of the same vector. Held-out movies get every task, because they
are the ground truth that evaluation compares ELM with, task by task.

Generation runs in chunks written to the version's work folder; an interrupted run resumes at the first
missing chunk and never regenerates a finished one (ArtifactStore.produce(resumable=True)).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from elm import vectors as vec
from elm.artifacts import Artifact, ArtifactStore, WorkDir
from elm.model.base_lm import LOAD_LOCK
from elm.embed.stage import read_tables
from elm.synth.facts import movie_facts, user_facts
from elm.metrics.semantic_consistency import cosine_rows, encode_texts, mix, random_partner
from elm.embed.splits import HELDOUT, TRAIN, hash_order
from elm.synth.checks import check_target, title_variants
from elm.synth.catalog import Task, render_elm_prompt, render_teacher_prompt, select_tasks
from elm.synth.teachers.local import LocalTeacherConfig
from elm.synth.teachers.openai import OpenAITeacherConfig
from elm.synth.teachers.template import Movie, TemplateTeacher

log = logging.getLogger(__name__)

STAGE = "synthesize"
CODE_VERSION = "2"  # 2: alternate titles in parentheses count as naming the movie
TEACHERS = ("local", "openai", "template")
CHUNKS = "chunks"
# Settings that change speed, not text: kept out of the artifact version.
_SPEED_ONLY = {"batch_size", "threads", "max_concurrency", "timeout_s", "max_retries", "backoff_s", "api_key_env"}


class SynthesisError(RuntimeError):
    """The stage cannot publish: no usable targets, or inputs that do not fit together."""


@dataclass(frozen=True)
class SynthesisConfig:
    teacher: str = "template"
    """Who writes targets: "template" (metadata only), "local" (a transformers LM here), "openai" (a chat endpoint).
    The embedded default is template: within the make run budget, SmolLM2-135M as teacher writes a few hundred
    targets that invent facts and name the title, and the ELM trained on them reads vectors worse (the issue note
    has the numbers). With a capable teacher (local GPU model, or openai -> vLLM), use that."""
    tasks: tuple[str, ...] = ("all",)
    """Task names from elm/synth/catalog.py, or ("all",)."""
    train_movies: int | None = 200
    """Training-split movies to write targets for (None: all eligible)."""
    heldout_movies: int | None = 20
    """Held-out movies, each with every selected movie task (the ground-truth reference)."""
    train_users: int | None = 40
    """Training-split users for the user tasks (None: all)."""
    heldout_users: int | None = 10
    """Held-out users for the user tasks."""
    tasks_per_movie: int | None = 4
    """Movie tasks sampled per training movie (None: every selected task)."""
    min_movie_ratings: int = 10
    """Movies with fewer ratings are not sampled: their behavioral vectors are mostly noise."""
    max_new_tokens: int | None = None
    """Caps every task's max_target_tokens (shorter targets generate and train faster)."""
    partner_space: str = "semantic"
    """Space whose nearest neighbour is the partner of "nearest" two-movie tasks: semantic or behavioral."""
    seed: int = 0
    """Entity sampling, task sampling, random partners, teacher sampling."""
    chunk_size: int = 64
    """Rows generated between two checkpoints of the resumable work."""
    local: LocalTeacherConfig = field(default_factory=LocalTeacherConfig)
    """Settings of the local teacher (used when teacher == "local")."""
    openai: OpenAITeacherConfig | None = None
    """Endpoint of the openai teacher (required when teacher == "openai")."""

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(f"SynthesisConfig.teacher must be one of {list(TEACHERS)}, got {self.teacher!r}")
        if self.teacher == "openai" and self.openai is None:
            raise ValueError("SynthesisConfig.teacher='openai' needs SynthesisConfig.openai (base_url and model)")
        if isinstance(self.tasks, str):
            raise ValueError(f"SynthesisConfig.tasks must be a tuple of names, got the string {self.tasks!r}")
        select_tasks(list(self.tasks))  # raises UnknownTaskError listing the known names
        for name in ("train_movies", "heldout_movies", "train_users", "heldout_users", "tasks_per_movie",
                     "max_new_tokens"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ValueError(f"SynthesisConfig.{name} must be None or an int >= 0, got {v!r}")
        if self.tasks_per_movie == 0:
            raise ValueError("SynthesisConfig.tasks_per_movie must be >= 1 (or None for every task)")
        if self.max_new_tokens is not None and self.max_new_tokens < 8:
            raise ValueError(f"SynthesisConfig.max_new_tokens must be >= 8, got {self.max_new_tokens}")
        if self.partner_space not in ("semantic", "behavioral"):
            raise ValueError(f"SynthesisConfig.partner_space must be semantic or behavioral, got {self.partner_space!r}")
        if self.chunk_size < 1 or self.min_movie_ratings < 0:
            raise ValueError("SynthesisConfig: chunk_size must be >= 1 and min_movie_ratings >= 0")

    def teacher_settings(self) -> dict:
        """The text-affecting settings of the chosen teacher."""
        sub = {"local": self.local, "openai": self.openai}.get(self.teacher)
        if sub is None:
            return {}
        return {f.name: getattr(sub, f.name) for f in fields(sub) if f.name not in _SPEED_ONLY}

    def version_config(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("local", "openai", "chunk_size")}
        d["tasks"] = [t.name for t in select_tasks(list(self.tasks))]
        d["teacher_settings"] = self.teacher_settings()
        return d


def teacher_id(cfg: SynthesisConfig) -> str:
    if cfg.teacher == "local":
        return f"local:{Path(cfg.local.model).name}"
    if cfg.teacher == "openai":
        return f"openai:{cfg.openai.model}@{cfg.openai.base_url}"
    return "template"


def max_tokens(task: Task, cfg: SynthesisConfig) -> int:
    return min(task.max_target_tokens, cfg.max_new_tokens or task.max_target_tokens)


# -----------------------------------------------------------------------------
# what to generate


def _has_metadata(facts: dict) -> bool:
    try:
        Movie.of(facts)
        return True
    except ValueError:
        return False


def eligible_movies(facts: pd.DataFrame, ratings: pd.DataFrame, vectors: list[vec.Vectors], min_ratings: int) -> pd.Index:
    """Movies a target can be written for and trained on: metadata, enough ratings, a vector in every space."""
    counts = ratings["movieId"].value_counts()
    ok = facts["movieId"].map(counts).fillna(0).to_numpy() >= min_ratings
    for v in vectors:
        ok &= np.isin(facts["movieId"].to_numpy(), v.ids)
    meta = np.array([_has_metadata(r) for r in facts.to_dict("records")])
    if (~meta).any():
        log.info("synthesize: %d movies have no metadata (no genres, tags or year) and are skipped, e.g. %s",
                 int((~meta).sum()), facts.loc[~meta, "movieId"].head(5).tolist())
    return pd.Index(facts.loc[ok & meta, "movieId"].to_numpy())


def _sample(ids, n: int | None, seed: int, salt: int) -> list[int]:
    order = hash_order(np.asarray(ids, dtype=np.int64), seed, salt)
    return [int(i) for i in (order if n is None else order[:n])]


def plan_items(cfg: SynthesisConfig, movie_split: pd.Series, user_split: pd.Series, eligible: pd.Index,
               eligible_users: pd.Index, partner_vectors: vec.Vectors) -> pd.DataFrame:
    """Every (entity, task, partner) to generate, in a fixed order: the rows of the dataset to be."""
    tasks = select_tasks(list(cfg.tasks))
    movie_tasks = [t for t in tasks if "movie" in t.slots]
    user_tasks = [t for t in tasks if "user" in t.slots]
    rows = []
    pools = {s: np.asarray(sorted(set(eligible) & set(movie_split[movie_split == s].index)), dtype=np.int64)
             for s in (TRAIN, HELDOUT)}
    if movie_tasks:
        for split, n in ((TRAIN, cfg.train_movies), (HELDOUT, cfg.heldout_movies)):
            pool = pools[split]
            if n and len(pool) == 0:
                raise SynthesisError(f"no eligible {split} movies (metadata, >= {cfg.min_movie_ratings} ratings, "
                                     f"vectors): lower min_movie_ratings or check the inputs")
            # Partners come from the same split: a training pair must not carry a held-out vector.
            unit = partner_vectors.get(pool)
            unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
            for mid in _sample(pool, n, cfg.seed, salt=11 if split == TRAIN else 12):
                rng = np.random.default_rng([cfg.seed, mid])
                chosen = movie_tasks
                if split == TRAIN and cfg.tasks_per_movie and cfg.tasks_per_movie < len(movie_tasks):
                    pick = np.sort(rng.choice(len(movie_tasks), cfg.tasks_per_movie, replace=False))
                    chosen = [movie_tasks[i] for i in pick]
                for t in chosen:
                    partner = None
                    if t.partner == "random":
                        others = pool[pool != mid]
                        partner = int(others[rng.integers(len(others))]) if len(others) else None
                    elif t.partner == "nearest":
                        sims = unit @ unit[np.searchsorted(pool, mid)]
                        sims[pool == mid] = -np.inf
                        partner = int(pool[int(np.argmax(sims))]) if len(pool) > 1 else None
                    if t.partner is not None and partner is None:
                        continue  # a pool of one movie has no partner to offer
                    rows.append(("movie", mid, partner, t.name, split))
    for t in user_tasks:
        for split, n in ((TRAIN, cfg.train_users), (HELDOUT, cfg.heldout_users)):
            pool = sorted(set(eligible_users) & set(user_split[user_split == split].index))
            for uid in _sample(pool, n, cfg.seed, salt=21 if split == TRAIN else 22):
                rows.append(("user", uid, None, t.name, split))
    items = pd.DataFrame(rows, columns=["kind", "entity_id", "partner_id", "task", "split"])
    items["partner_id"] = items["partner_id"].astype("Int64")
    items["entity_id"] = items["entity_id"].astype("int64")
    return items


# -----------------------------------------------------------------------------
# generating


def make_teacher(cfg: SynthesisConfig, store: ArtifactStore):
    """The teacher object for cfg: TemplateTeacher, or a ChatTeacher (LocalTeacher / OpenAITeacher)."""
    if cfg.teacher == "template":
        return TemplateTeacher()
    if cfg.teacher == "local":
        from elm.synth.teachers.local import LocalTeacher

        return LocalTeacher(cfg.local, store)
    from elm.synth.teachers.openai import OpenAITeacher

    return OpenAITeacher(cfg.openai)


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
    if isinstance(teacher, TemplateTeacher):
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


def run_chunks(items: pd.DataFrame, work_dir: Path, generate, chunk_size: int) -> pd.DataFrame:
    """generate(chunk_items, chunk_index) for every chunk not already on disk; all chunks, concatenated.

    A chunk is written to a temporary name and renamed, so a kill mid-write leaves no half chunk.
    """
    chunks = work_dir / CHUNKS
    todo = missing_chunks(len(items), work_dir, chunk_size)
    left = sum(len(items.iloc[i * chunk_size:(i + 1) * chunk_size]) for i in todo)
    t0, made = time.perf_counter(), 0
    with tqdm(total=len(items), desc="synthesize", unit="ex", initial=len(items) - left) as bar:
        for i in todo:
            part = items.iloc[i * chunk_size:(i + 1) * chunk_size]
            write_chunk(generate(part, i), chunks, i)
            made += len(part)
            bar.update(len(part))
    seconds = time.perf_counter() - t0
    if made:
        log.info("synthesize: generated %d rows in %.1f s (%.2f rows/s)", made, seconds, made / max(seconds, 1e-9))
    return read_chunks(len(items), work_dir, chunk_size)


def _n_chunks(n_items: int, chunk_size: int) -> int:
    return (n_items + chunk_size - 1) // chunk_size


def write_chunk(df: pd.DataFrame, folder: Path, i: int) -> Path:
    """Written under a temporary name unique to this process and thread, then renamed: a kill mid-write
    leaves no half chunk, and two workers never share a temporary file."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{i:06d}.{os.getpid()}-{threading.get_ident()}.tmp"
    df.to_parquet(tmp, index=False)
    return tmp.replace(folder / f"{i:06d}.parquet")


def missing_chunks(n_items: int, work_dir: Path, chunk_size: int) -> list[int]:
    done = {int(p.stem) for p in (work_dir / CHUNKS).glob("*.parquet")} if (work_dir / CHUNKS).exists() else set()
    if done:
        log.info("synthesize: resuming, %d of %d chunks already generated", len(done), _n_chunks(n_items, chunk_size))
    return [i for i in range(_n_chunks(n_items, chunk_size)) if i not in done]


def read_chunks(n_items: int, work_dir: Path, chunk_size: int) -> pd.DataFrame:
    paths = [work_dir / CHUNKS / f"{i:06d}.parquet" for i in range(_n_chunks(n_items, chunk_size))]
    if missing := [p.name for p in paths if not p.exists()]:
        raise SynthesisError(f"chunks {missing[:5]} were not written to {work_dir / CHUNKS} "
                             "(did map_chunks run them?)")
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


# -----------------------------------------------------------------------------
# the reference


def reference_sc(examples: pd.DataFrame, semantic: vec.Vectors, encoder: str, seed: int = 0) -> pd.DataFrame:
    """Per movie task, on held-out movies: mean SC of the teacher's targets against their own semantic vector
    (sc_truth) and against a random other held-out example's vector of the same task (sc_random)."""
    held = examples[(examples["split"] == HELDOUT) & (examples["kind"] == "movie")].reset_index(drop=True)
    cols = ["task", "n", "sc_truth", "sc_random"]
    if held.empty:
        return pd.DataFrame(columns=cols)
    a = semantic.get(held["entity_id"])
    has_b = held["partner_id"].notna().to_numpy()
    target = a.copy()
    if has_b.any():
        target[has_b] = mix(a[has_b], semantic.get(held.loc[has_b, "partner_id"].astype("int64")))
    enc = encode_texts(held["target"].tolist(), encoder)
    sc = cosine_rows(enc, target)
    rows = []
    for task, idx in held.groupby("task", sort=False).indices.items():
        if len(idx) < 2:
            rows.append((task, len(idx), float(sc[idx].mean()), float("nan")))
            continue
        other = idx[random_partner(len(idx), seed)]
        rows.append((task, len(idx), float(sc[idx].mean()), float(cosine_rows(enc[idx], target[other]).mean())))
    return pd.DataFrame(rows, columns=cols)


def reference_table(ref: pd.DataFrame, teacher: str = "") -> str:
    """The reference SC as a text table, with the mean over tasks."""
    if ref.empty:
        return "reference SC: no held-out movie targets"
    lines = [f"reference SC on held-out movies{f' ({teacher})' if teacher else ''}: "
             "teacher text vs own vector (truth) and vs a random movie's (random)",
             f"  {'task':<32}{'n':>4}{'truth':>8}{'random':>8}{'gap':>8}"]
    for r in ref.itertuples():
        lines.append(f"  {r.task:<32}{r.n:>4}{r.sc_truth:>8.3f}{r.sc_random:>8.3f}{r.sc_truth - r.sc_random:>8.3f}")
    lines.append(f"  {'mean over tasks':<32}{int(ref['n'].sum()):>4}{ref['sc_truth'].mean():>8.3f}"
                 f"{ref['sc_random'].mean():>8.3f}{(ref['sc_truth'] - ref['sc_random']).mean():>8.3f}")
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# the stage


def plan(arts: dict[str, Artifact], cfg: SynthesisConfig) -> tuple[pd.DataFrame, dict[str, dict[int, dict]]]:
    """(items, facts): every row to generate, in chunk order, and the facts the teacher reads. A pure
    function of the inputs and the config, so any process can recompute it (run_chunk)."""
    t = read_tables(arts["ingest"], ("movies", "tags", "ratings", "genome_scores", "genome_tags"))
    semantic = vec.read(arts["semantic"].file("movies.parquet"))
    behavioral = vec.read(arts["behavioral"].file("movies.parquet"))
    users = vec.read(arts["behavioral"].file("users.parquet"))
    msplit = pd.read_parquet(arts["splits"].file("movies.parquet")).set_index("movieId")["split"]
    usplit = pd.read_parquet(arts["splits"].file("users.parquet")).set_index("userId")["split"]
    mf = movie_facts(t["movies"], t.get("tags"), t.get("genome_scores"), t.get("genome_tags"))
    uf = user_facts(t["ratings"], t["movies"])
    eligible = eligible_movies(mf, t["ratings"], [semantic, behavioral], cfg.min_movie_ratings)
    eligible_users = pd.Index(uf.loc[uf["liked"].map(len) > 0, "userId"]).intersection(pd.Index(users.ids))
    partner_vectors = semantic if cfg.partner_space == "semantic" else behavioral
    items = plan_items(cfg, msplit, usplit, eligible, eligible_users, partner_vectors)
    if items.empty:
        raise SynthesisError("nothing to generate: every entity count is 0 or no entity is eligible")
    facts = {"movie": {int(r["movieId"]): r for r in mf.to_dict("records")},
             "user": {int(r["userId"]): r for r in uf.to_dict("records")}}
    return items, facts


def chunk_seed(cfg: SynthesisConfig, i: int) -> int:
    """The sampling seed of chunk i: the same text wherever and whenever the chunk is generated."""
    return cfg.seed * 1_000_003 + i


ChunkMapper = Callable[[list[int], dict[str, str], SynthesisConfig, str, str], None]
"""``map_chunks(indices, versions, cfg, store_root, folder)``: run ``run_chunk(i, versions, cfg, store_root,
folder)`` for every index, anywhere (threads, a Dask cluster), and return once all are written."""

_local = threading.local()


def run_chunk(i: int, versions: dict[str, str], cfg: SynthesisConfig, store_root: str, folder: str) -> str:
    """Chunk i from picklable arguments, in whatever process runs it: resolves the inputs by version,
    recomputes the plan (kept per thread for the next chunk, with the teacher), generates the chunk and
    writes it atomically into ``folder``. Returns the chunk's path."""
    key = (str(store_root), tuple(sorted(versions.items())), cfg)
    if getattr(_local, "key", None) != key:
        _local.key = _local.state = None
        store = ArtifactStore(store_root)
        arts = {k: store.resolve(k, v) for k, v in versions.items()}
        with LOAD_LOCK:  # a local teacher loads a model; other threads may be loading theirs
            _local.state, _local.key = (*plan(arts, cfg), make_teacher(cfg, store)), key
    items, facts, teacher = _local.state
    part = items.iloc[i * cfg.chunk_size:(i + 1) * cfg.chunk_size]
    return str(write_chunk(generate_chunk(part, facts, teacher, cfg, seed=chunk_seed(cfg, i)), Path(folder), i))


def synthesize(arts: dict[str, Artifact], cfg: SynthesisConfig, store: ArtifactStore,
               teacher=None, map_chunks: ChunkMapper | None = None) -> tuple[Artifact, bool]:
    """The synthesize artifact for the ingest, splits, semantic and behavioral artifacts given.

    teacher: an already built teacher (tests, or a caller that reuses one); default make_teacher(cfg).
    map_chunks: generates the missing chunks elsewhere (see ChunkMapper; the Prefect flow hands them to a
    task runner); None generates them here, one after another.
    """
    missing = {"ingest", "splits", "semantic", "behavioral"} - set(arts)
    if missing:
        raise SynthesisError(f"synthesize needs the artifacts {sorted(missing)} too")
    tid = teacher_id(cfg)
    inputs = {k: arts[k].version for k in ("ingest", "splits", "semantic", "behavioral")}

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
        if map_chunks is None:
            rows = run_chunks(items, work.path, generate, cfg.chunk_size)
        else:
            todo = missing_chunks(len(items), work.path, cfg.chunk_size)
            if todo:
                map_chunks(todo, inputs, cfg, str(store.root), str(work.path / CHUNKS))
            rows = read_chunks(len(items), work.path, cfg.chunk_size)
        gen_seconds = time.perf_counter() - t0
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

        ref = reference_sc(accepted, semantic, arts["semantic"].manifest["config"].get("encoder", "all-MiniLM-L6-v2"),
                           cfg.seed)
        accepted.to_parquet(work.path / "examples.parquet", index=False)
        rejected.to_parquet(work.path / "rejected.parquet", index=False)
        ref.to_parquet(work.path / "reference_sc.parquet", index=False)
        for p in (work.path / CHUNKS).glob("*"):
            p.unlink()
        (work.path / CHUNKS).rmdir()
        words = accepted["target"].str.split().str.len()
        work.summary.update(
            teacher=tid, rows=len(rows), accepted=len(accepted), rejected=reasons,
            cleaned=accepted["changed"].str.split(",").explode().replace("", np.nan).dropna().value_counts().to_dict(),
            by_split={f"{k}/{sp}": int(n) for (k, sp), n in accepted.groupby(["kind", "split"]).size().items()},
            tasks=int(accepted["task"].nunique()), mean_target_words=round(float(words.mean()), 1),
            generate_seconds=round(gen_seconds, 1),
            reference_sc=ref.round(4).to_dict("records"),
        )

    return store.produce(STAGE, inputs=inputs, config=cfg.version_config(), code_version=CODE_VERSION,
                         build=build, resumable=True)


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
