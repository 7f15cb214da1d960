"""The ``evaluate`` stage: a trained ELM against its references (PAPER.md, "Metrics" and "Experiments").

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

References, measured the same way in the same run: ``random`` (for SC, a text scored against a random other
entity's vector of the same task; for BC, a random ranking) and ``truth`` (the teacher's text), and the
normalised score (x - random) / (truth - random): 0 is chance, 1 is as good as the teacher.

Files of an evaluate version (schema in the docstring of each writer below; the report stage reads them):
    generations.parquet       one row per scored text: every number traces back to a text
    scores.parquet            generalisation, per split x task x metric, with references
    interpolation.parquet     per pair x weight x system
    cav.parquet               per space x attribute x alpha
    cav_classifiers.parquet   the CAVs' classifier accuracy on held-out entities
    eval_config.json          the EvalConfig
Interrupted runs resume: each finished part is kept in the version's work folder until publishing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from elm import vectors as vec
from elm.artifacts import Artifact, ArtifactStore, WorkDir
from elm.model.base_lm import LOAD_LOCK
from elm.metrics.behavioral_consistency import (DEFAULT_K, behavioral_consistency, movie_relevance, random_ranking_ndcg,
                                        user_relevance)
from elm.evaluate.cav import CAV, fit_cav, movie_labels, parse_attribute, user_labels
from elm.serve.describe import Describer
from elm.embed.stage import read_tables
from elm.evaluate.interpolation import DEFAULT_ALPHAS, check_alphas, lerp, movie_pairs, user_pairs
from elm.metrics.semantic_consistency import cosine_rows, encode_texts, mix, normalised, random_partner
from elm.embed.splits import HELDOUT, TRAIN, hash_order
from elm.synth.catalog import MOVIE_TASKS, get_task
from elm.evaluate.baseline import OneShot, TextBaseline, blend_prompt, one_shot_prompt

log = logging.getLogger(__name__)

STAGE = "evaluate"
CODE_VERSION = "1"
PARTS = "parts"
CONFIG_FILE = "eval_config.json"
SUMMARY_TASK = "summary"
"""The task interpolations and CAV moves are described with, and whose references their plots show."""
PROFILE_TASK = "user_profile"


class EvaluationError(ValueError):
    """Evaluation inputs that cannot be evaluated: mismatched spaces, nothing held out, bad config."""


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how much of it. Defaults fit the embedded default on a 2-core CPU in minutes."""

    heldout_per_task: int = 6
    """Held-out entities scored per task (every one when the synthesize artifact has fewer)."""
    train_per_task: int = 2
    """Training entities per task, for the train/held-out gap (0 skips them)."""
    tasks: tuple[str, ...] | None = None
    """Tasks to evaluate (None: every task the synthesize artifact has held-out examples for)."""
    baseline: bool = True
    """Also run the text-only baseline (the base LLM reading titles) on held-out movie tasks."""
    baseline_model: str | None = None
    """The baseline's LLM (None: the ELM's own base model, the fair comparison)."""
    max_new_tokens: int | None = 96
    """Cap on generated tokens per text (None: each task's own budget). SC needs a few sentences, not 192
    tokens; the cap is what keeps evaluation within minutes on a CPU."""
    batch_size: int = 16
    """Texts per generate call (16 decodes ~1.2x faster than 8 here: bench/bench_teacher.py)."""
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Interpolation weights a in [0, 1]; 0 and 1 are the pair's own vectors."""
    interpolation_anchor: str = "Forrest Gump"
    """Title prefix of the movie every pair starts from (the paper's); the most rated movie when absent."""
    movie_pairs: int = 2
    """Movie pairs interpolated (0 skips)."""
    user_pairs: int = 1
    """Held-out user pairs interpolated and scored with BC (0 skips)."""
    cav_attributes: tuple[str, ...] = ("genre:Comedy", "genre:Horror", "genre:Romance", "tag:funny")
    """Soft attributes, "genre:<MovieLens genre>" or "tag:<tag>" (genome relevance >= 0.5 where the dataset
    has the genome, else any user applied the tag)."""
    cav_alphas: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    """CAV steps, in standard deviations of the entities' projections on the CAV."""
    cav_movies: int = 2
    """Held-out movies without the attribute moved along each movie CAV (0 skips movie moves)."""
    cav_users: int = 1
    """Held-out users moved along each user CAV (0 skips user CAVs)."""
    cav_min_positives: int = 10
    """Fewer positive (or negative) training entities than this for an attribute is an error."""
    bc_k: int = DEFAULT_K
    """NDCG cut-off of BC."""
    seed: int = 0
    """Which entities are sampled, and the random references."""

    def __post_init__(self) -> None:
        ints = ("heldout_per_task", "train_per_task", "movie_pairs", "user_pairs", "cav_movies", "cav_users")
        for name in ints:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"EvalConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if self.heldout_per_task < 2:
            raise ValueError(f"EvalConfig.heldout_per_task must be >= 2 (the random reference pairs entities), "
                             f"got {self.heldout_per_task}")
        for name in ("batch_size", "bc_k", "cav_min_positives"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.max_new_tokens is not None and not 8 <= self.max_new_tokens <= 512:
            raise ValueError(f"EvalConfig.max_new_tokens must be None or in [8, 512], got {self.max_new_tokens}")
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(self.tasks))
            for t in self.tasks:
                get_task(t)  # UnknownTaskError lists the known tasks
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        check_alphas(self.alphas, "EvalConfig.alphas")
        object.__setattr__(self, "cav_alphas", tuple(float(a) for a in self.cav_alphas))
        if not self.cav_alphas or any(not np.isfinite(a) for a in self.cav_alphas):
            raise ValueError(f"EvalConfig.cav_alphas must be a non-empty list of numbers, got {self.cav_alphas}")
        object.__setattr__(self, "cav_attributes", tuple(self.cav_attributes))
        for a in self.cav_attributes:
            parse_attribute(a)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ValueError(f"unknown EvalConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def load(cls, path: str | Path) -> EvalConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read EvalConfig from {path}: {e}") from e


# -----------------------------------------------------------------------------
# inputs


def resolve_inputs(store: ArtifactStore, train: str | None = None, pinned: dict[str, str] | None = None
                   ) -> dict[str, Artifact]:
    """The train artifact (latest when None) and the artifacts it was made from; ``pinned`` overrides
    any of them by stage (checked against the ELM's spaces by check_spaces)."""
    pinned = dict(pinned or {})
    if unknown := sorted(set(pinned) - {"synthesize", "semantic", "behavioral", "ingest", "splits"}):
        raise EvaluationError(f"unknown input stage(s) {unknown}; pin synthesize, semantic, behavioral, ingest "
                              "or splits")
    arts = {"train": store.resolve("train", train)}
    up = arts["train"].manifest.get("inputs", {})
    for stage in ("synthesize", "semantic", "behavioral"):
        arts[stage] = store.resolve(stage, pinned.get(stage) or up.get(stage))
    up = arts["synthesize"].manifest.get("inputs", {})
    for stage in ("ingest", "splits"):
        arts[stage] = store.resolve(stage, pinned.get(stage) or up.get(stage))
    return arts


def check_spaces(describer: Describer, arts: dict[str, Artifact]) -> None:
    """Every space the ELM reads must come from the very artifact evaluation scores against: vectors of
    another fit (another WALS run rotates its factors) or another dimension mean nothing to the adapter."""
    for s in describer.elm.config.spaces:
        stage, _, version = (s.source or "").partition("/")
        if stage not in arts:
            continue
        art = arts[stage]
        table = TABLE_BY_KIND[s.kind]
        got = vec.read(art.file(table)).dim
        if got != s.dim:
            raise EvaluationError(f"the ELM's space {s.name!r} reads {s.dim}-dimensional vectors but "
                                  f"{stage}/{art.version}/{table} has dimension {got}: evaluate with the "
                                  f"{stage} artifact the model was trained on ({s.source})")
        if version and version != art.version:
            raise EvaluationError(f"the ELM's space {s.name!r} was trained on {s.source} but evaluation was given "
                                  f"{stage}/{art.version}: vectors of another fit are not the space it learned")


TABLE_BY_KIND = {"movie": "movies.parquet", "user": "users.parquet"}


@dataclass
class Context:
    """Everything evaluation reads, loaded once."""

    cfg: EvalConfig
    describer: Describer
    encoder: object
    examples: pd.DataFrame
    movies: pd.DataFrame
    ratings: pd.DataFrame
    tags: pd.DataFrame | None
    genome: tuple[pd.DataFrame | None, pd.DataFrame | None]
    semantic: vec.Vectors
    behavioral: vec.Vectors
    users: vec.Vectors
    movie_split: pd.Series
    user_split: pd.Series
    titles: dict[int, str]
    candidates: np.ndarray
    """movieIds ranked by BC: those with both a semantic and a behavioral vector."""
    cand_semantic: np.ndarray
    cand_factors: np.ndarray
    baseline_model: str
    _baseline: TextBaseline | None = None

    def baseline(self) -> TextBaseline:
        if self._baseline is None:
            self._baseline = TextBaseline(self.baseline_model, self.describer.store, self.cfg.batch_size)
        return self._baseline

    @property
    def movie_space(self) -> str:
        return self.describer.default_space("movie")

    def user_space(self) -> str | None:
        return next((s.name for s in self.describer.elm.config.spaces if s.kind == "user"), None)

    def movie_space_vectors(self) -> vec.Vectors:
        return self.describer.table(self.movie_space).vectors

    def movie_space_is_semantic(self) -> bool:
        return self.describer.spaces[self.movie_space].source.startswith("semantic/")


def load_context(arts: dict[str, Artifact], cfg: EvalConfig, store: ArtifactStore,
                 describer: Describer | None = None) -> Context:
    d = describer or Describer.from_train(store, arts["train"].version)
    check_spaces(d, arts)
    t = read_tables(arts["ingest"], ("movies", "ratings", "tags", "genome_scores", "genome_tags"))
    semantic = vec.read(arts["semantic"].file("movies.parquet"))
    behavioral = vec.read(arts["behavioral"].file("movies.parquet"))
    users = vec.read(arts["behavioral"].file("users.parquet"))
    cand = np.intersect1d(semantic.ids, behavioral.ids)
    from elm.synth.facts import _titles  # "Name (year)", the form the teacher saw

    from elm.embed.semantic import load_encoder

    encoder_name = arts["semantic"].manifest["config"].get("encoder", "all-MiniLM-L6-v2")
    return Context(
        cfg=cfg, describer=d, encoder=load_encoder(encoder_name),
        examples=pd.read_parquet(arts["synthesize"].file("examples.parquet")),
        movies=t["movies"], ratings=t["ratings"], tags=t.get("tags"),
        genome=(t.get("genome_scores"), t.get("genome_tags")),
        semantic=semantic, behavioral=behavioral, users=users,
        movie_split=pd.read_parquet(arts["splits"].file("movies.parquet")).set_index("movieId")["split"],
        user_split=pd.read_parquet(arts["splits"].file("users.parquet")).set_index("userId")["split"],
        titles=_titles(t["movies"]).to_dict(), candidates=cand,
        cand_semantic=semantic.get(cand), cand_factors=behavioral.get(cand),
        baseline_model=cfg.baseline_model or d.elm.config.base_model)


# -----------------------------------------------------------------------------
# scoring: one place turns texts into SC and BC with their random references

GEN_COLUMNS = ["experiment", "system", "split", "task", "entity_kind", "entity_id", "partner_id", "title",
               "alpha", "attribute", "space", "prompt", "output", "sc", "sc_random", "bc", "bc_random",
               "bc_other", "attribute_score", "nearest_cosine"]
"""generations.parquet: sc/bc NaN where they do not apply (SC needs a semantic vector, BC a CF relevance);
sc_random: the text against a random other row's vector (same experiment, system, task); bc_random: a random
ranking's NDCG; bc_other: the text against a random other row's relevance; attribute_score: CAV rows only."""


def score_texts(ctx: Context, texts: Sequence[str], sc_vectors: np.ndarray | None,
                relevance: np.ndarray | None, seed: int) -> dict[str, np.ndarray]:
    """SC and BC of each text, with per-row references; rows of sc_vectors/relevance that are NaN are
    not applicable (e.g. a user row has no semantic vector)."""
    n = len(texts)
    enc = encode_texts(list(texts), ctx.encoder)
    out = {k: np.full(n, np.nan) for k in ("sc", "sc_random", "bc", "bc_random", "bc_other")}
    other = random_partner(n, seed) if n >= 2 else None
    if sc_vectors is not None:
        ok = np.isfinite(sc_vectors).all(axis=1)
        if ok.any():
            out["sc"][ok] = cosine_rows(enc[ok], sc_vectors[ok])
            if other is not None:
                pair = ok & ok[other]
                out["sc_random"][pair] = cosine_rows(enc[pair], sc_vectors[other[pair]])
    if relevance is not None:
        ok = np.isfinite(relevance).all(axis=1)
        if ok.any():
            k = ctx.cfg.bc_k
            out["bc"][ok] = behavioral_consistency(enc[ok], ctx.cand_semantic, relevance[ok], k)
            out["bc_random"][ok] = random_ranking_ndcg(relevance[ok], k, seed)
            if other is not None:
                pair = ok & ok[other]
                out["bc_other"][pair] = behavioral_consistency(enc[pair], ctx.cand_semantic, relevance[other[pair]], k)
    out["encoded"] = enc
    return out


def _nan_rows(n: int, dim: int) -> np.ndarray:
    return np.full((n, dim), np.nan, dtype=np.float32)


def movie_targets(ctx: Context, ids: Sequence[int], partners: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """(SC vector, BC relevance) of movie rows: a pair's SC vector is the mix of the two (as in the
    reference); BC against the CF item neighbourhood for one-movie rows with a CF vector."""
    n = len(ids)
    sc = _nan_rows(n, ctx.semantic.dim)
    rel = _nan_rows(n, len(ctx.candidates))
    for i, (m, p) in enumerate(zip(ids, partners)):
        if m in ctx.semantic.ids:
            sc[i] = ctx.semantic.get([m])[0]
            if p is not None and not pd.isna(p):
                sc[i] = mix(sc[i][None], ctx.semantic.get([int(p)]))[0] if int(p) in ctx.semantic.ids else np.nan
        if (p is None or pd.isna(p)) and np.isin(m, ctx.behavioral.ids):
            rel[i] = movie_relevance(ctx.behavioral.get([m]), ctx.cand_factors)[0]
    return sc, rel


def frame(ctx: Context, base: dict, texts: Sequence[str], scores: dict[str, np.ndarray], **columns) -> pd.DataFrame:
    """A generations.parquet part: base (scalars for every row), columns (one value per row), scores."""
    n = len(texts)
    df = pd.DataFrame({"output": list(texts)})
    for k, v in {**base, **columns}.items():
        df[k] = v if np.ndim(v) else [v] * n
    for k in ("sc", "sc_random", "bc", "bc_random", "bc_other"):
        df[k] = scores[k]
    for col in GEN_COLUMNS:
        if col not in df:
            df[col] = np.nan if col in ("alpha", "attribute_score", "nearest_cosine") else ""
    df["partner_id"] = pd.array(df["partner_id"].replace("", np.nan), dtype="Int64")
    df["entity_id"] = df["entity_id"].astype("int64")
    for col in ("alpha", "attribute_score", "nearest_cosine", "sc", "sc_random", "bc", "bc_random", "bc_other"):
        df[col] = df[col].astype("float64")
    return df[GEN_COLUMNS]


# -----------------------------------------------------------------------------
# 1. generalisation


def pick_rows(ctx: Context, split: str, task: str, n: int) -> pd.DataFrame:
    ex = ctx.examples
    rows = ex[(ex["split"] == split) & (ex["task"] == task)].drop_duplicates(["entity_id", "partner_id"])
    if rows.empty or n == 0:
        return rows.iloc[:0]
    return shuffled(rows, ctx.cfg.seed, salt=len(task)).head(n).reset_index(drop=True)


def shuffled(rows: pd.DataFrame, seed: int, salt: int) -> pd.DataFrame:
    """rows in the seeded hash order of their entity_id (stable when the artifact grows)."""
    order = hash_order(rows["entity_id"].unique(), seed, salt)
    rank = pd.Series(np.arange(len(order)), index=order)
    return rows.iloc[np.argsort(rank[rows["entity_id"].to_numpy()].to_numpy(), kind="stable")]


def _budget(ctx: Context, task: str) -> int:
    own = get_task(task).max_target_tokens
    return min(own, ctx.cfg.max_new_tokens) if ctx.cfg.max_new_tokens else own


def one_shot_example(ctx: Context, task: str) -> OneShot | None:
    """A training movie's titles and teacher target for this task (the baseline's worked example)."""
    ex = ctx.examples
    rows = ex[(ex["split"] == TRAIN) & (ex["task"] == task)]
    if rows.empty:
        return None
    r = shuffled(rows, ctx.cfg.seed, salt=7).iloc[0]
    titles = [ctx.titles.get(int(r["entity_id"]), "")]
    if pd.notna(r["partner_id"]):
        titles.append(ctx.titles.get(int(r["partner_id"]), ""))
    return OneShot(tuple(titles), str(r["target"]))


def generalisation_rows(ctx: Context, split: str, tasks: Sequence[str]) -> pd.DataFrame:
    """The examples scored for ``split``: up to heldout_per_task (train_per_task) entities per task."""
    n = ctx.cfg.heldout_per_task if split == HELDOUT else ctx.cfg.train_per_task
    frames = [pick_rows(ctx, split, t, n) for t in tasks]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else ctx.examples.iloc[:0]


def _titles_of(ctx: Context, row) -> list[str]:
    return [ctx.titles.get(int(row.entity_id), "")] + ([ctx.titles.get(int(row.partner_id), "")]
                                                       if pd.notna(row.partner_id) else [])


def score_by_task(ctx: Context, rows: pd.DataFrame, texts: Sequence[str], base: dict, **columns) -> pd.DataFrame:
    """Generalisation rows scored task by task (the random reference pairs entities of the same task)."""
    rows = rows.reset_index(drop=True).assign(_text=list(texts))
    for k, v in columns.items():
        rows[f"_{k}"] = v
    parts = []
    for task, d in rows.groupby("task", sort=False):
        kind = "user" if task == PROFILE_TASK else "movie"
        ids = d["entity_id"].astype("int64").tolist()
        if kind == "movie":
            sc_vec, rel = movie_targets(ctx, ids, d["partner_id"].tolist())
        else:
            sc_vec, rel = None, user_relevance(ctx.users.get(ids), ctx.cand_factors)
        scores = score_texts(ctx, d["_text"].tolist(), sc_vec, rel, ctx.cfg.seed)
        parts.append(frame(ctx, base | {"experiment": "generalisation", "task": task, "entity_kind": kind},
                           d["_text"].tolist(), scores, entity_id=ids, partner_id=d["partner_id"].tolist(),
                           title=d["title"].fillna("").tolist(), **{k: d[f"_{k}"].tolist() for k in columns}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=GEN_COLUMNS)


def generalisation_part(ctx: Context, split: str, tasks: Sequence[str]) -> pd.DataFrame:
    """The ELM's text and the teacher's for every selected task and entity of ``split``, batched across tasks."""
    rows = generalisation_rows(ctx, split, tasks)
    if rows.empty:
        return pd.DataFrame(columns=GEN_COLUMNS)
    requests = [(r.task, (int(r.entity_id), int(r.partner_id)) if pd.notna(r.partner_id) else int(r.entity_id))
                for r in rows.itertuples()]
    answers = ctx.describer.describe_requests(requests, max_new_tokens=ctx.cfg.max_new_tokens,
                                              batch_size=ctx.cfg.batch_size)
    base = {"split": split}
    return pd.concat([
        score_by_task(ctx, rows, [a.text for a in answers], base | {"system": "elm"},
                      prompt=[a.prompt for a in answers], space=[a.slots[0].space for a in answers],
                      nearest_cosine=[a.slots[0].nearest_cosine for a in answers]),
        score_by_task(ctx, rows, rows["target"].tolist(), base | {"system": "truth", "prompt": "", "space": ""}),
    ], ignore_index=True)


def baseline_part(ctx: Context, tasks: Sequence[str]) -> pd.DataFrame:
    """The text-only baseline on the same held-out movie rows as the ELM: titles and a one-shot example."""
    rows = generalisation_rows(ctx, HELDOUT, [t for t in tasks if t != PROFILE_TASK])
    if rows.empty:
        return pd.DataFrame(columns=GEN_COLUMNS)
    shots = {t: one_shot_example(ctx, t) for t in rows["task"].unique()}
    prompts = [one_shot_prompt(get_task(r.task), _titles_of(ctx, r), shots[r.task]) for r in rows.itertuples()]
    texts = ctx.baseline().complete(prompts, [_budget(ctx, t) for t in rows["task"]])
    return score_by_task(ctx, rows, texts, {"split": HELDOUT, "system": "baseline", "space": "title"},
                         prompt=prompts)


# -----------------------------------------------------------------------------
# 2. interpolation


def interpolation_movie_part(ctx: Context) -> pd.DataFrame:
    cfg = ctx.cfg
    space_vecs = ctx.movie_space_vectors()
    pool = np.intersect1d(space_vecs.ids, ctx.semantic.ids)
    pairs = movie_pairs(ctx.movies, ctx.ratings, cfg.interpolation_anchor, cfg.movie_pairs, pool)
    parts = []
    for a_id, b_id in pairs:
        alphas = np.array(cfg.alphas, dtype=np.float32)
        k = len(alphas)
        fed = lerp(np.repeat(space_vecs.get([a_id]), k, 0), np.repeat(space_vecs.get([b_id]), k, 0), alphas)
        sc_vec = lerp(np.repeat(ctx.semantic.get([a_id]), k, 0), np.repeat(ctx.semantic.get([b_id]), k, 0), alphas)
        answers = ctx.describer.describe_many(SUMMARY_TASK, list(fed), spaces=ctx.movie_space,
                                              max_new_tokens=_budget(ctx, SUMMARY_TASK), batch_size=cfg.batch_size)
        ta, tb = ctx.titles.get(a_id, str(a_id)), ctx.titles.get(b_id, str(b_id))
        base = dict(experiment="interpolation", split="", task=SUMMARY_TASK, entity_kind="movie", entity_id=a_id,
                    partner_id=b_id, title=f"{ta} + {tb}")
        texts = [x.text for x in answers]
        parts.append(frame(ctx, base | {"system": "elm", "space": ctx.movie_space, "prompt": answers[0].prompt},
                           texts, score_texts(ctx, texts, sc_vec, None, cfg.seed), alpha=alphas.astype(float),
                           nearest_cosine=[x.slots[0].nearest_cosine for x in answers]))
        if cfg.baseline:
            prompts = [blend_prompt(ta, tb, float(a)) for a in alphas]
            texts = ctx.baseline().complete(prompts, [_budget(ctx, SUMMARY_TASK)] * k)
            parts.append(frame(ctx, base | {"system": "baseline", "space": "title"}, texts,
                               score_texts(ctx, texts, sc_vec, None, cfg.seed), alpha=alphas.astype(float),
                               prompt=prompts))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=GEN_COLUMNS)


def heldout_users(ctx: Context) -> list[int]:
    ids = ctx.users.ids[np.isin(ctx.users.ids, ctx.user_split.index[ctx.user_split == HELDOUT])]
    return [int(u) for u in hash_order(ids, ctx.cfg.seed, salt=11)]


def interpolation_user_part(ctx: Context) -> pd.DataFrame:
    cfg, space = ctx.cfg, ctx.user_space()
    if space is None:
        return pd.DataFrame(columns=GEN_COLUMNS)
    parts = []
    for a_id, b_id in user_pairs(heldout_users(ctx), cfg.user_pairs):
        alphas = np.array(cfg.alphas, dtype=np.float32)
        k = len(alphas)
        fed = lerp(np.repeat(ctx.users.get([a_id]), k, 0), np.repeat(ctx.users.get([b_id]), k, 0), alphas)
        answers = ctx.describer.describe_many(PROFILE_TASK, list(fed), spaces=space,
                                              max_new_tokens=_budget(ctx, PROFILE_TASK), batch_size=cfg.batch_size)
        texts = [x.text for x in answers]
        rel = user_relevance(fed, ctx.cand_factors)
        base = dict(experiment="interpolation", system="elm", split=HELDOUT, task=PROFILE_TASK, entity_kind="user",
                    entity_id=a_id, partner_id=b_id, title=f"user {a_id} + user {b_id}", space=space,
                    prompt=answers[0].prompt)
        parts.append(frame(ctx, base, texts, score_texts(ctx, texts, None, rel, cfg.seed),
                           alpha=alphas.astype(float), nearest_cosine=[x.slots[0].nearest_cosine for x in answers]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=GEN_COLUMNS)


# -----------------------------------------------------------------------------
# 3. CAV extrapolation


def fit_cavs(ctx: Context) -> tuple[dict[str, dict[str, CAV]], pd.DataFrame]:
    """Every attribute's CAVs (fit_attribute_cavs); fitted before anything is generated, so an attribute with
    too few examples fails fast."""
    out = {parse_attribute(key).key: fit_attribute_cavs(ctx, key) for key in ctx.cfg.cav_attributes}
    rows = [c.to_row() for cavs in out.values() for c in {id(c): c for c in cavs.values()}.values()]
    return out, pd.DataFrame(rows, columns=list(CAV.ROW_COLUMNS))


def fit_attribute_cavs(ctx: Context, key: str) -> dict[str, CAV]:
    """One attribute's CAV in the semantic space (the text scorer), the ELM's movie space and the user space.
    Seeded, so a part run elsewhere (run_part) refits the very CAVs the classifier table reports."""
    cfg = ctx.cfg
    attr = parse_attribute(key)
    heldout_m = ctx.movie_split.index[ctx.movie_split == HELDOUT]
    labels = movie_labels(attr, ctx.movies, ctx.tags, *ctx.genome)
    cavs = {"text": fit_cav(ctx.semantic, labels, heldout_m, attribute=attr.key, space="semantic_movies",
                            min_positives=cfg.cav_min_positives, seed=cfg.seed)}
    if cfg.cav_movies:
        cavs["movie"] = cavs["text"] if ctx.movie_space_is_semantic() else fit_cav(
            ctx.movie_space_vectors(), labels, heldout_m, attribute=attr.key, space=ctx.movie_space,
            min_positives=cfg.cav_min_positives, seed=cfg.seed)
    if cfg.cav_users and ctx.user_space() is not None:
        heldout_u = ctx.user_split.index[ctx.user_split == HELDOUT]
        cavs["user"] = fit_cav(ctx.users, user_labels(attr, ctx.ratings, labels), heldout_u, attribute=attr.key,
                               space=ctx.user_space(), min_positives=cfg.cav_min_positives, seed=cfg.seed)
    return cavs


def cav_part(ctx: Context, key: str, cavs: dict[str, CAV]) -> pd.DataFrame:
    cfg = ctx.cfg
    alphas = np.array(cfg.cav_alphas, dtype=np.float32)
    k = len(alphas)
    text_cav = cavs["text"]
    labels = movie_labels(parse_attribute(key), ctx.movies, ctx.tags, *ctx.genome)
    parts = []
    if "movie" in cavs:
        space_vecs = ctx.movie_space_vectors()
        ex = ctx.examples
        pool = ex.loc[(ex["split"] == HELDOUT) & (ex["kind"] == "movie"), "entity_id"].drop_duplicates().to_numpy()
        pool = pool[np.isin(pool, space_vecs.ids)]
        neg = pool[~labels.reindex(pool).fillna(False).to_numpy(bool)]
        chosen = [int(m) for m in hash_order(neg, cfg.seed, salt=13)[:cfg.cav_movies]]
        for m in chosen:
            moved = cavs["movie"].move(np.repeat(space_vecs.get([m]), k, 0), alphas)
            answers = ctx.describer.describe_many(SUMMARY_TASK, list(moved), spaces=ctx.movie_space,
                                                  max_new_tokens=_budget(ctx, SUMMARY_TASK), batch_size=cfg.batch_size)
            texts = [x.text for x in answers]
            if ctx.movie_space_is_semantic():
                sc_vec, rel = moved, None
            else:
                sc_vec, rel = None, movie_relevance(moved, ctx.cand_factors)
            s = score_texts(ctx, texts, sc_vec, rel, cfg.seed)
            base = dict(experiment="cav", system="elm", split=HELDOUT, task=SUMMARY_TASK, entity_kind="movie",
                        entity_id=m, title=ctx.titles.get(m, ""), attribute=key, space=ctx.movie_space,
                        prompt=answers[0].prompt)
            parts.append(frame(ctx, base, texts, s, alpha=alphas.astype(float),
                               attribute_score=text_cav.probability(s["encoded"]),
                               nearest_cosine=[x.slots[0].nearest_cosine for x in answers]))
    if "user" in cavs:
        ul = user_labels(parse_attribute(key), ctx.ratings, labels)
        users = [u for u in heldout_users(ctx) if not bool(ul.get(u, False))][:cfg.cav_users]
        space = ctx.user_space()
        for u in users:
            moved = cavs["user"].move(np.repeat(ctx.users.get([u]), k, 0), alphas)
            answers = ctx.describer.describe_many(PROFILE_TASK, list(moved), spaces=space,
                                                  max_new_tokens=_budget(ctx, PROFILE_TASK), batch_size=cfg.batch_size)
            texts = [x.text for x in answers]
            s = score_texts(ctx, texts, None, user_relevance(moved, ctx.cand_factors), cfg.seed)
            base = dict(experiment="cav", system="elm", split=HELDOUT, task=PROFILE_TASK, entity_kind="user",
                        entity_id=u, title=f"user {u}", attribute=key, space=space, prompt=answers[0].prompt)
            parts.append(frame(ctx, base, texts, s, alpha=alphas.astype(float),
                               attribute_score=text_cav.probability(s["encoded"]),
                               nearest_cosine=[x.slots[0].nearest_cosine for x in answers]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=GEN_COLUMNS)


# -----------------------------------------------------------------------------
# aggregation: the tables the report reads

METRICS = {"sc": ("sc_random", "sc_random"), "bc": ("bc_random", "bc_other")}
"""metric -> (its random reference column, its random-other-entity column) in generations.parquet."""


def aggregate_scores(gens: pd.DataFrame) -> pd.DataFrame:
    """scores.parquet: per split x task x metric, the mean of each system and the references (truth: the
    teacher's text; random: see METRICS; other_entity: the teacher's text scored against another entity)."""
    g = gens[gens["experiment"] == "generalisation"]
    rows = []
    for (split, task, kind), d in g.groupby(["split", "task", "entity_kind"], sort=False):
        for metric, (rand_col, other_col) in METRICS.items():
            by = {s: d.loc[d["system"] == s] for s in ("elm", "baseline", "truth")}
            elm = by["elm"][metric].dropna()
            if elm.empty:
                continue
            truth = by["truth"][metric].mean()
            random = by["truth"][rand_col].mean()
            base = by["baseline"][metric].mean() if len(by["baseline"]) else np.nan
            rows.append(dict(split=split, task=task, entity_kind=kind, metric=metric, n=len(elm), elm=elm.mean(),
                             baseline=base, truth=truth, random=random,
                             other_entity=by["truth"][other_col].mean(),
                             elm_normalised=normalised(elm.mean(), random, truth),
                             baseline_normalised=normalised(base, random, truth) if np.isfinite(base) else np.nan))
    cols = ["split", "task", "entity_kind", "metric", "n", "elm", "baseline", "truth", "random", "other_entity",
            "elm_normalised", "baseline_normalised"]
    out = pd.DataFrame(rows, columns=cols)
    out["n"] = out["n"].astype("int64")
    return out


def reference_levels(scores: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """entity kind -> (random, truth) of the metric its curves use: SC of held-out summaries for movies,
    BC of held-out profiles for users (the dashed lines of the interpolation and CAV plots)."""
    out = {}
    for kind, task, metric in (("movie", SUMMARY_TASK, "sc"), ("user", PROFILE_TASK, "bc")):
        r = scores[(scores["split"] == HELDOUT) & (scores["task"] == task) & (scores["metric"] == metric)]
        out[kind] = (float(r["random"].iloc[0]), float(r["truth"].iloc[0])) if len(r) else (np.nan, np.nan)
    return out


def _curve_metric(row: pd.Series) -> str:
    return "sc" if np.isfinite(row["sc"]) else "bc"


def aggregate_interpolation(gens: pd.DataFrame, refs: dict[str, tuple[float, float]]) -> pd.DataFrame:
    g = gens[gens["experiment"] == "interpolation"]
    cols = ["entity_kind", "pair", "a_id", "b_id", "alpha", "system", "metric", "value", "random", "truth"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    metric = g.apply(_curve_metric, axis=1)
    out = pd.DataFrame({"entity_kind": g["entity_kind"], "pair": g["title"], "a_id": g["entity_id"].astype("int64"),
                        "b_id": g["partner_id"].astype("int64"), "alpha": g["alpha"], "system": g["system"],
                        "metric": metric, "value": np.where(metric == "sc", g["sc"], g["bc"])})
    out["random"] = out["entity_kind"].map(lambda k: refs[k][0])
    out["truth"] = out["entity_kind"].map(lambda k: refs[k][1])
    return out[cols].reset_index(drop=True)


def aggregate_cav(gens: pd.DataFrame, refs: dict[str, tuple[float, float]]) -> pd.DataFrame:
    g = gens[gens["experiment"] == "cav"]
    cols = ["space", "entity_kind", "attribute", "alpha", "metric", "n", "value", "attribute_score", "random", "truth"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    g = g.assign(metric=g.apply(_curve_metric, axis=1))
    g = g.assign(value=np.where(g["metric"] == "sc", g["sc"], g["bc"]))
    out = (g.groupby(["space", "entity_kind", "attribute", "alpha", "metric"], sort=False)
           .agg(n=("value", "size"), value=("value", "mean"), attribute_score=("attribute_score", "mean"))
           .reset_index())
    out["n"] = out["n"].astype("int64")
    out["random"] = out["entity_kind"].map(lambda k: refs[k][0])
    out["truth"] = out["entity_kind"].map(lambda k: refs[k][1])
    return out[cols]


def headline(scores: pd.DataFrame, cav: pd.DataFrame, classifiers: pd.DataFrame) -> dict:
    """The few numbers that go in the manifest summary (and the top of the report)."""
    movie = scores[(scores["entity_kind"] == "movie") & (scores["metric"] == "sc")]
    held, train = movie[movie["split"] == HELDOUT], movie[movie["split"] == TRAIN]
    prof = scores[(scores["task"] == PROFILE_TASK) & (scores["metric"] == "bc") & (scores["split"] == HELDOUT)]

    def r(x) -> float | None:
        return None if x is None or not np.isfinite(x) else round(float(x), 4)

    based = held[held["baseline"].notna()]
    # pooled (normalise the means): a task whose references nearly coincide would blow up a mean of ratios
    out = {"heldout_sc_normalised": {
               "elm": r(normalised(held["elm"].mean(), held["random"].mean(), held["truth"].mean())),
               "baseline": r(normalised(based["baseline"].mean(), based["random"].mean(), based["truth"].mean()))
               if len(based) else None},
           "sc": {"elm_heldout": r(held["elm"].mean()), "elm_train": r(train["elm"].mean()) if len(train) else None,
                  "truth_heldout": r(held["truth"].mean()), "random_heldout": r(held["random"].mean())},
           "tasks": int(held["task"].nunique())}
    if len(prof):
        p = prof.iloc[0]
        out["profile_bc"] = {"elm": r(p["elm"]), "truth": r(p["truth"]), "random": r(p["random"]),
                             "other_user_text": r(p["other_entity"]), "normalised": r(p["elm_normalised"])}
    if len(cav):
        lo, hi = cav["alpha"].min(), cav["alpha"].max()
        a = cav.groupby(["space", "attribute"])
        out["cav_attribute_score"] = {
            f"{s}/{attr}": [r(d.loc[d["alpha"] == lo, "attribute_score"].mean()),
                            r(d.loc[d["alpha"] == hi, "attribute_score"].mean())] for (s, attr), d in a}
    if len(classifiers):
        out["cav_heldout_accuracy"] = {f"{row.space}/{row.attribute}": r(row.heldout_accuracy)
                                       for row in classifiers.itertuples()}
    return out


# -----------------------------------------------------------------------------
# which tasks


def selected_tasks(cfg: EvalConfig, examples: pd.DataFrame) -> list[str]:
    held = examples[examples["split"] == HELDOUT]
    have = set(held["task"])
    if cfg.tasks is not None:
        if missing := [t for t in cfg.tasks if t not in have]:
            raise EvaluationError(f"the synthesize artifact has no held-out examples for task(s) {missing} "
                                  f"(it has held-out examples for {sorted(have) or 'no task'})")
        return list(cfg.tasks)
    return [t for t in [*MOVIE_TASKS, PROFILE_TASK] if t in have]


# -----------------------------------------------------------------------------
# parts: the units of work. Each is one Parquet file in the version's work folder, so a part runs once
# (an interrupted run resumes) and can run anywhere that sees the store (run_part, map_parts).

INPUT_STAGES = ("train", "synthesize", "semantic", "behavioral", "ingest", "splits")

PartMapper = Callable[[list[str], dict[str, str], EvalConfig, str, str], None]
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


def part_path(folder: str | Path, name: str) -> Path:
    return Path(folder) / f"{name.replace('/', '__').replace(':', '_')}.parquet"


def _make_part(name: str, folder: str | Path, compute: Callable[[str], pd.DataFrame]) -> Path:
    """Compute one part and write it atomically: a reader (or a resumed run) never sees half a file, and
    two processes writing the same part never share a temporary file."""
    t0 = time.perf_counter()
    df = compute(name)
    path = part_path(folder, name)
    tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    log.info("evaluate: %s: %d texts in %.1f s", name, len(df), time.perf_counter() - t0)
    return path


_local = threading.local()


def _context(store_root: str, versions: dict[str, str], cfg: EvalConfig) -> Context:
    """The Context of these inputs, kept for the thread's next part: loading the ELM and the encoder takes
    seconds and a worker runs several parts. One per thread, and only the last one: a loaded model is not
    shared by concurrent generate calls (thread runners), and a long-lived worker moves on to other models."""
    key = (str(store_root), tuple(sorted(versions.items())), cfg)
    if getattr(_local, "key", None) != key:
        _local.key = _local.context = None
        store = ArtifactStore(store_root)
        arts = resolve_inputs(store, versions["train"], {k: v for k, v in versions.items() if k != "train"})
        with LOAD_LOCK:  # the baseline LM loads later, under the same lock (TextBaseline)
            _local.context, _local.key = load_context(arts, cfg, store), key
    return _local.context


def run_part(name: str, versions: dict[str, str], cfg: EvalConfig, store_root: str, folder: str) -> str:
    """One part from picklable arguments, in whatever process runs it (a map_parts worker): resolves the
    inputs by version in the store at ``store_root``, loads (or reuses) the Context, computes the part (a CAV
    part fits its own attribute's CAVs) and writes it into ``folder``. Returns the file's path."""
    ctx = _context(store_root, versions, cfg)
    tasks = selected_tasks(cfg, ctx.examples)
    kind, _, key = name.partition("/")
    cavs = {key: fit_attribute_cavs(ctx, key)} if kind == "cav" else {}
    return str(_make_part(name, folder, lambda n: compute_part(ctx, n, tasks, cavs)))


def _not_done(names: Sequence[str], folder: Path) -> list[str]:
    """The parts still to run; those an interrupted run finished are kept."""
    todo = []
    for name in names:
        if part_path(folder, name).exists():
            log.info("evaluate: %s already done (resumed from %s)", name, part_path(folder, name).name)
        else:
            todo.append(name)
    return todo


def _run_parts(names: Sequence[str], folder: Path, compute: Callable[[str], pd.DataFrame]) -> None:
    """Run the parts here, one after another."""
    from tqdm.auto import tqdm

    bar = tqdm(names, desc="evaluate", unit="part", disable=None)
    for name in bar:
        bar.set_postfix_str(name)
        _make_part(name, folder, compute)


def _read_parts(names: Sequence[str], folder: Path) -> pd.DataFrame:
    if missing := [n for n in names if not part_path(folder, n).exists()]:
        raise EvaluationError(f"evaluation parts {missing} were not written to {folder} (did map_parts run them?)")
    frames = [f for f in (pd.read_parquet(part_path(folder, n)) for n in names) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=GEN_COLUMNS)


# -----------------------------------------------------------------------------
# the stage


def evaluate(arts: dict[str, Artifact], cfg: EvalConfig, store: ArtifactStore, describer: Describer | None = None,
             map_parts: PartMapper | None = None) -> tuple[Artifact, bool]:
    """The evaluate artifact of a train artifact (arts from resolve_inputs). ``describer``: an already
    loaded ELM for arts["train"] (tests). ``map_parts``: runs the parts elsewhere (see PartMapper; the
    Prefect flow hands them to a task runner); None runs them here, one after another. Either way the CAVs
    are fitted first (fail fast) and parts an interrupted run finished are not run again."""
    if missing := set(INPUT_STAGES) - set(arts):
        raise EvaluationError(f"evaluate needs the artifacts {sorted(missing)} too (see resolve_inputs)")
    examples = pd.read_parquet(arts["synthesize"].file("examples.parquet"), columns=["split", "task", "kind"])
    if not (examples["split"] == HELDOUT).any():
        raise EvaluationError(f"the synthesize artifact {arts['synthesize'].version} has no held-out examples: "
                              "nothing to evaluate generalisation on (synthesize with heldout_movies > 0)")
    tasks = selected_tasks(cfg, examples)
    inputs = {k: arts[k].version for k in INPUT_STAGES}

    def build(work: WorkDir) -> None:
        t0 = time.perf_counter()
        ctx = load_context(arts, cfg, store, describer)
        cavs, classifiers = fit_cavs(ctx) if cfg.cav_attributes and (cfg.cav_movies or cfg.cav_users) \
            else ({}, pd.DataFrame(columns=list(CAV.ROW_COLUMNS)))
        names = part_names(cfg, list(cavs))
        folder = work.path / PARTS
        folder.mkdir(parents=True, exist_ok=True)
        todo = _not_done(names, folder)
        if map_parts is None:
            _run_parts(todo, folder, lambda name: compute_part(ctx, name, tasks, cavs))
        elif todo:
            map_parts(todo, inputs, cfg, str(store.root), str(folder))
        gens = _read_parts(names, folder)

        scores = aggregate_scores(gens)
        refs = reference_levels(scores)
        interp, cav = aggregate_interpolation(gens, refs), aggregate_cav(gens, refs)
        gens.to_parquet(work.path / "generations.parquet", index=False)
        scores.to_parquet(work.path / "scores.parquet", index=False)
        interp.to_parquet(work.path / "interpolation.parquet", index=False)
        cav.to_parquet(work.path / "cav.parquet", index=False)
        classifiers.to_parquet(work.path / "cav_classifiers.parquet", index=False)
        (work.path / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        shutil.rmtree(folder)
        work.summary.update(model=f"train/{arts['train'].version}", texts=len(gens),
                            by_experiment={f"{e}/{sy}": int(n) for (e, sy), n
                                           in gens.groupby(["experiment", "system"]).size().items()},
                            seconds=round(time.perf_counter() - t0, 1),
                            headline=headline(scores, cav, classifiers))

    return store.produce(STAGE, inputs=inputs, config=cfg.to_dict(), code_version=CODE_VERSION, build=build,
                         resumable=True)


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
