"""Scoring: one place turns texts into SC and BC with their random references (score_texts), and into rows
of generations.parquet (frame, GEN_COLUMNS).

Every system's text is cleaned the same way before it is scored: sentences naming the movie it describes
(or its partner; alternate titles included) are removed, as they are from training targets, and so is any
remaining word of those titles ("The story of Three Colors ...": elm/synth/checks.py). The semantic
documents begin with the title, so a text that repeats its movie's title, whole or in pieces, would score by
recall, not by reading. The raw text and its SC are kept beside the cleaned ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from elm.evaluate.context import Context
from elm.metrics.behavioral_consistency import behavioral_consistency, movie_relevance, random_ranking_ndcg
from elm.metrics.semantic_consistency import cosine_rows, encode_texts, mix, others_mean, random_partner
from elm.synth.checks import strip_names, strip_title_words, title_variants

GEN_COLUMNS = ["experiment", "system", "split", "task", "entity_kind", "entity_id", "partner_id", "title",
               "alpha", "attribute", "space", "prompt", "output", "sc", "sc_random", "bc", "bc_random",
               "bc_other", "attribute_score", "nearest_cosine", "named", "sc_raw", "output_raw"]
"""generations.parquet: sc/bc NaN where they do not apply (SC needs a semantic vector, BC a CF relevance);
sc_random: the text's mean SC against every other row's vector of the same experiment, system and task
(metrics/semantic_consistency.py: others_mean); bc_random: a random
ranking's NDCG; bc_other: the text against a random other row's relevance; attribute_score: CAV rows only;
named: the raw text named its entity (or partner), whole or by title words, and those sentences and
words were removed from ``output``;
sc_raw, output_raw: SC and text before that cleaning (output_raw empty when nothing was removed)."""


def names_of(ctx: Context, ids) -> tuple[str, ...]:
    """Every title a text must not name when it describes these movies (ids may hold None/NaN)."""
    out = []
    for i in ids:
        if i is not None and not pd.isna(i):
            out += title_variants(ctx.names.get(int(i), ""))
    return tuple(dict.fromkeys(out))


def score_texts(ctx: Context, texts: Sequence[str], sc_vectors: np.ndarray | None,
                relevance: np.ndarray | None, seed: int,
                avoid: Sequence[tuple[str, ...]] | None = None) -> dict[str, np.ndarray]:
    """SC and BC of each text, with per-row references; rows of sc_vectors/relevance that are NaN are
    not applicable (e.g. a user row has no semantic vector). ``avoid``: per text, the titles it must not name
    (names_of); those sentences and title words are removed before scoring, and ``texts``, ``named``,
    ``sc_raw`` say so."""
    n = len(texts)
    raw = [t if isinstance(t, str) else "" for t in texts]
    cleaned = [_clean(t, a) for t, a in zip(raw, avoid)] if avoid is not None else [(t, False) for t in raw]
    texts = [t for t, _ in cleaned]
    named = np.array([x for _, x in cleaned], dtype=bool)
    enc = encode_texts(list(texts), ctx.encoder)
    out = {k: np.full(n, np.nan) for k in ("sc", "sc_random", "bc", "bc_random", "bc_other")}
    other = random_partner(n, seed) if n >= 2 else None
    if sc_vectors is not None:
        ok = np.isfinite(sc_vectors).all(axis=1)
        if ok.any():
            out["sc"][ok] = cosine_rows(enc[ok], sc_vectors[ok])
            out["sc_random"][ok] = others_mean(enc[ok], sc_vectors[ok])
    if relevance is not None:
        ok = np.isfinite(relevance).all(axis=1)
        if ok.any():
            k = ctx.cfg.bc_k
            out["bc"][ok] = behavioral_consistency(enc[ok], ctx.cand_semantic, relevance[ok], k)
            out["bc_random"][ok] = random_ranking_ndcg(relevance[ok], k, seed)
            if other is not None:
                pair = ok & ok[other]
                out["bc_other"][pair] = behavioral_consistency(enc[pair], ctx.cand_semantic, relevance[other[pair]], k)
    out["sc_raw"] = out["sc"].copy()
    if named.any() and sc_vectors is not None:
        rows = np.flatnonzero(named & np.isfinite(sc_vectors).all(axis=1))
        if len(rows):
            out["sc_raw"][rows] = cosine_rows(encode_texts([raw[i] for i in rows], ctx.encoder), sc_vectors[rows])
    out["encoded"], out["texts"], out["named"] = enc, texts, named
    out["raw"] = [r if x else "" for r, x in zip(raw, named)]
    return out


def _clean(text: str, avoid: tuple[str, ...]) -> tuple[str, bool]:
    text, named = strip_names(text, avoid)
    text, words = strip_title_words(text, avoid)
    return text, named or words > 0


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
    texts = scores.get("texts", texts)
    n = len(texts)
    df = pd.DataFrame({"output": list(texts)})
    for k, v in {**base, **columns}.items():
        df[k] = v if np.ndim(v) else [v] * n
    for k in ("sc", "sc_random", "bc", "bc_random", "bc_other"):
        df[k] = scores[k]
    df["named"] = scores.get("named", np.zeros(n, dtype=bool))
    df["sc_raw"] = scores.get("sc_raw", scores["sc"])
    df["output_raw"] = scores.get("raw", [""] * n)
    for col in GEN_COLUMNS:
        if col not in df:
            df[col] = np.nan if col in ("alpha", "attribute_score", "nearest_cosine") else ""
    df["partner_id"] = pd.array(df["partner_id"].replace("", np.nan), dtype="Int64")
    df["entity_id"] = df["entity_id"].astype("int64")
    df["named"] = df["named"].astype(bool)
    for col in ("alpha", "attribute_score", "nearest_cosine", "sc", "sc_random", "bc", "bc_random", "bc_other",
                "sc_raw"):
        df[col] = df[col].astype("float64")
    return df[GEN_COLUMNS]
