"""Behavioral consistency (BC), docs/METHOD.md "Metrics": does a text rank movies the way the CF model does?

    scores_j    = cos(encoder(text), s_j)                  s_j: semantic embedding of candidate movie j
    BC(text)    = NDCG@k(ranking by scores, relevance)

The relevance comes from the CF model (elm.embed.behavioral), never from text:

    user profile u            rel_j = x_u . y_j                      the model's predicted preference
    behavioral movie vector i  rel_j = cos(y_i, y_j)                 the model's item neighbourhood

NDCG@k of a ranking pi (candidates by score, descending; ties by candidate index) with gains
g_j = max(rel_j, 0):

    DCG@k  = sum_{r < k} g_{pi_r} / log2(r + 2)        IDCG@k = the same over the gains sorted descending
    NDCG@k = DCG@k / IDCG@k                             NaN where IDCG@k = 0 (no relevant candidate)

BC is reported next to a random-ranking reference (random_ranking_ndcg) and the teacher's text scored
the same way. Everything is vectorised over rows (one text per row) and computed in float64.
"""

from __future__ import annotations

import numpy as np

from elm.vectors import unit_rows

# The cut-off used throughout the experiments: a reader judges a profile by its top picks, and 20 leaves
# room for a profile that names several tastes.
DEFAULT_K = 20


def _unit64(m: np.ndarray) -> np.ndarray:
    return unit_rows(m, np.float64)  # float64: NDCG ties must not depend on rounding


def _matrix(a, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf")
    return a


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """NDCG@k of each row's ranking by ``scores`` against ``relevance``: [n] for [n, m] inputs, a float for [m]."""
    scores = np.asarray(scores, dtype=np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    if scores.shape != relevance.shape:
        raise ValueError(f"ndcg_at_k: scores {scores.shape} and relevance {relevance.shape} differ in shape")
    if scores.ndim not in (1, 2) or scores.shape[-1] == 0:
        raise ValueError(f"ndcg_at_k: expected [m] or [n, m] with m >= 1 candidates, got shape {scores.shape}")
    if int(k) != k or k < 1:
        raise ValueError(f"ndcg_at_k: k must be a positive integer, got {k!r}")
    if not (np.isfinite(scores).all() and np.isfinite(relevance).all()):
        raise ValueError("ndcg_at_k: scores and relevance must be finite")
    single = scores.ndim == 1
    scores, relevance = np.atleast_2d(scores), np.atleast_2d(relevance)
    k = min(int(k), scores.shape[1])

    # CF scores can be negative (the dot product of factors, or an anti-correlated neighbour). NDCG assumes
    # non-negative gains: a negative gain would reward pushing a disliked movie *into* the top k over an
    # irrelevant one, and could make IDCG zero or negative. "Not relevant" is the floor.
    gains = np.clip(relevance, 0.0, None)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # stable: ties go to the lower index
    dcg = np.take_along_axis(gains, order, axis=1) @ discount
    idcg = -np.sort(-gains, axis=1)[:, :k] @ discount
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(idcg > 0, dcg / idcg, np.nan)
    return float(out[0]) if single else out


def user_relevance(user_vectors: np.ndarray, movie_factors: np.ndarray) -> np.ndarray:
    """The CF model's predicted preference of each user for each movie, x_u . y_j: [n, m]."""
    users = _matrix(user_vectors, "user_vectors")
    movies = _matrix(movie_factors, "movie_factors")
    if users.shape[1] != movies.shape[1]:
        raise ValueError(f"user_relevance: user vectors have {users.shape[1]} factors, "
                         f"movie factors have {movies.shape[1]}")
    return users @ movies.T


def movie_relevance(movie_factor_rows: np.ndarray, movie_factors: np.ndarray) -> np.ndarray:
    """Cosine of each movie's CF factors with every candidate's, its CF neighbourhood: [n, m].

    A movie that is itself among the candidates has relevance 1 with itself, the largest gain; drop it
    from the candidates to ask only about its neighbours.
    """
    rows = _matrix(movie_factor_rows, "movie_factor_rows")
    movies = _matrix(movie_factors, "movie_factors")
    if rows.shape[1] != movies.shape[1]:
        raise ValueError(f"movie_relevance: query rows have {rows.shape[1]} factors, "
                         f"movie factors have {movies.shape[1]}")
    return _unit64(rows) @ _unit64(movies).T


def behavioral_consistency(encoded: np.ndarray, candidates: np.ndarray, relevance: np.ndarray,
                           k: int = DEFAULT_K) -> np.ndarray:
    """BC of each encoded text [n, d] over semantic candidate vectors [m, d] against relevance [n, m]: [n]."""
    encoded = _matrix(encoded, "encoded texts")
    candidates = _matrix(candidates, "candidate vectors")
    relevance = _matrix(relevance, "relevance")
    if encoded.shape[1] != candidates.shape[1]:
        raise ValueError(f"behavioral_consistency: encoded texts have dimension {encoded.shape[1]}, candidate "
                         f"vectors {candidates.shape[1]}: rank the semantic space made by the text encoder")
    if relevance.shape != (len(encoded), len(candidates)):
        raise ValueError(f"behavioral_consistency: relevance has shape {relevance.shape}, expected "
                         f"({len(encoded)} texts, {len(candidates)} candidates)")
    return ndcg_at_k(_unit64(encoded) @ _unit64(candidates).T, relevance, k)


def random_ranking_ndcg(relevance: np.ndarray, k: int = DEFAULT_K, seed: int = 0, draws: int = 8) -> np.ndarray:
    """The random-ranking reference: mean NDCG@k over ``draws`` seeded random orders of the candidates: [n]."""
    relevance = _matrix(relevance, "relevance")
    if draws < 1:
        raise ValueError(f"random_ranking_ndcg: draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    # Uniform random scores rank the candidates in a uniformly random order (ties have probability zero).
    return np.mean([ndcg_at_k(rng.random(relevance.shape), relevance, k) for _ in range(draws)], axis=0)
