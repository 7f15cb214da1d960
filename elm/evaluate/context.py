"""The inputs of an evaluation: the artifacts a train artifact was made from (resolve_inputs), the check
that the ELM's spaces are theirs (check_spaces), and everything evaluation reads, loaded once (Context)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from elm import vectors as vec
from elm.artifacts import Artifact, ArtifactStore
from elm.data.ingest import read_ingest_tables
from elm.evaluate.baseline import TextBaseline
from elm.evaluate.config import EVALUATE, EvalConfig, EvaluationError
from elm.lineage import resolve_lineage
from elm.model.base_lm import inference_dtype
from elm.serve.describe import Describer



def resolve_inputs(store: ArtifactStore, train: str | None = None, pinned: dict[str, str] | None = None
                   ) -> dict[str, Artifact]:
    """The train artifact (latest when None) and the artifacts it was made from; ``pinned`` overrides
    any of them by stage (checked against the ELM's spaces by check_spaces)."""
    pinned = dict(pinned or {})
    upstream = [s for s in EVALUATE.inputs if s != "train"]
    if unknown := sorted(set(pinned) - set(upstream)):
        raise EvaluationError(f"unknown input stage(s) {unknown}; pin {', '.join(upstream)}")
    return resolve_lineage(store.resolve("train", train), upstream, pinned, store)


def check_spaces(describer: Describer, arts: dict[str, Artifact]) -> None:
    """Every space the ELM reads must come from the very artifact evaluation scores against: vectors of
    another fit (another WALS run rotates its factors) or another dimension mean nothing to the adapter."""
    for s in describer.elm.config.spaces:
        stage, _, version = (s.source or "").partition("/")
        if stage not in arts:
            continue
        art = arts[stage]
        table = vec.TABLES[s.kind]
        got = vec.read(art.file(table)).dim
        if got != s.dim:
            raise EvaluationError(f"the ELM's space {s.name!r} reads {s.dim}-dimensional vectors but "
                                  f"{stage}/{art.version}/{table} has dimension {got}: evaluate with the "
                                  f"{stage} artifact the model was trained on ({s.source})")
        if version and version != art.version:
            raise EvaluationError(f"the ELM's space {s.name!r} was trained on {s.source} but evaluation was given "
                                  f"{stage}/{art.version}: vectors of another fit are not the space it learned")


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
    """movieId -> "Name (year)", the form the teacher and the baseline saw."""
    names: dict[int, str]
    """movieId -> the MovieLens name with its alternate titles: what a scored text must not name."""
    candidates: np.ndarray
    """movieIds ranked by BC: those with both a semantic and a behavioral vector."""
    cand_semantic: np.ndarray
    cand_factors: np.ndarray
    baseline_model: str
    _baseline: TextBaseline | None = None

    def baseline(self) -> TextBaseline:
        if self._baseline is None:
            self._baseline = TextBaseline(self.baseline_model, self.describer.store, self.cfg.batch_size,
                                          dtype=inference_dtype(self.cfg.dtype))
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
    if describer is None:  # a describer passed in keeps the dtype its caller chose
        describer = Describer.from_train(store, arts["train"].version)
        describer.elm.to(getattr(torch, inference_dtype(cfg.dtype)))
    d = describer
    check_spaces(d, arts)
    t = read_ingest_tables(arts["ingest"], ("movies", "ratings", "tags", "genome_scores", "genome_tags"))
    semantic = vec.read(arts["semantic"].file("movies.parquet"))
    behavioral = vec.read(arts["behavioral"].file("movies.parquet"))
    users = vec.read(arts["behavioral"].file("users.parquet"))
    cand = np.intersect1d(semantic.ids, behavioral.ids)
    from elm.synth.facts import _titles  # "Name (year)", the form the teacher saw

    from elm.embed.semantic import DEFAULT_ENCODER, load_encoder

    encoder_name = arts["semantic"].manifest["config"].get("encoder", DEFAULT_ENCODER)
    return Context(
        cfg=cfg, describer=d, encoder=load_encoder(encoder_name),
        examples=pd.read_parquet(arts["synthesize"].file("examples.parquet")),
        movies=t["movies"], ratings=t["ratings"], tags=t.get("tags"),
        genome=(t.get("genome_scores"), t.get("genome_tags")),
        semantic=semantic, behavioral=behavioral, users=users,
        movie_split=pd.read_parquet(arts["splits"].file("movies.parquet")).set_index("movieId")["split"],
        user_split=pd.read_parquet(arts["splits"].file("users.parquet")).set_index("userId")["split"],
        titles=_titles(t["movies"]).to_dict(), names=t["movies"].set_index("movieId")["name"].to_dict(),
        candidates=cand,
        cand_semantic=semantic.get(cand), cand_factors=behavioral.get(cand),
        baseline_model=cfg.baseline_model or d.elm.config.base_model)
