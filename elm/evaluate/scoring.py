"""Scoring: one place turns texts into SC and BC with their random references (score_texts), and into rows
of generations.parquet (frame, GEN_COLUMNS)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from elm.evaluate.context import Context
from elm.metrics.behavioral_consistency import behavioral_consistency, movie_relevance, random_ranking_ndcg
from elm.metrics.semantic_consistency import cosine_rows, encode_texts, mix, random_partner

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
