"""Behavioral movie embeddings: weighted ALS (implicit-feedback matrix factorisation) on ratings.

A MovieLens rating says two things: the user chose to watch the movie, and how much they liked
it. Weighted ALS (Hu, Koren & Volinsky 2008, "Collaborative Filtering for Implicit Feedback
Datasets") models the first as a binary preference p_ui (1 if rated, 0 otherwise, over *all*
user x movie cells) and the second as a confidence c_ui that weights the squared error of that
cell:

    minimise  sum_ui c_ui (p_ui - x_u . y_i)^2  +  reg * (|x_u|^2 + |y_i|^2)

Unrated cells get c_ui = 1: probably-not-interested, but only weakly so. Rated cells get more:

    weighting="rating":  c_ui = 1 + alpha * r_ui / 5     (a 5-star rating weighs 1 + alpha,
                                                         a half star 1 + alpha / 10)
    weighting="binary":  c_ui = 1 + alpha                (every rating is equally strong evidence)

So a rating of any value is still a positive ("watched it"), and a high rating is a *more certain*
positive. Dividing by 5 keeps alpha's meaning the same for both weightings (the confidence of a
top rating). ``implicit`` reads its input matrix as c_ui directly (p_ui = 1 where stored), so we
build it ourselves and pass implicit's own alpha as 1.

Defaults (64 factors, reg 20, alpha 2, 15 sweeps) come from a grid on ml-latest-small scored by
evaluate_cf (NDCG@10 over two holdout seeds). Small alphas won: with ~165 ratings per user, the
9.7k weakly-weighted unrated cells already say a lot, and large alphas overfit the rated ones.
The penalty is large because implicit applies it unscaled to sums over all those cells; by
reg / alpha ~ 25 the factors collapse toward popularity, so the default stays at 10.

The factor dot product x_u . y_i is the model's predicted preference, what later stages use as
"the CF model's predicted rating" for relevance; y_i are the behavioral movie embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from elm.vectors import top_k, unit_rows

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("userId", "movieId", "rating")
WEIGHTINGS = ("rating", "binary")
MAX_RATING = 5.0
RELEVANT_RATING = 4.0  # a held-out movie counts as a hit only if the user liked it
MIN_EVAL_RATINGS = 5  # users with fewer ratings stay entirely in training
EVAL_BATCH = 1024  # users scored at once in evaluate_cf: batch x movies float32 stays small


@dataclass(frozen=True)
class WALSConfig:
    """Weighted ALS hyperparameters and the CF evaluation protocol (defaults tuned on ml-latest-small)."""

    factors: int = 64
    """Embedding size of users and movies."""
    regularization: float = 20.0
    """L2 penalty on the factors (implicit does not scale it by a user's or movie's rating count)."""
    iterations: int = 15
    """ALS sweeps (each solves users given movies, then movies given users)."""
    alpha: float = 2.0
    """Extra confidence of a 5-star rating (with binary weighting: of any rating) over an unrated cell."""
    weighting: str = "rating"
    """How a rating becomes a confidence: "rating" (1 + alpha * r / 5) or "binary" (1 + alpha)."""
    seed: int = 0
    """Seeds the factor initialisation and the evaluation holdout."""
    heldout_fraction: float = 0.2
    """evaluate_cf: fraction of each user's ratings held out (at least one)."""
    eval_k: int = 10
    """evaluate_cf: cut-off of precision@k, recall@k and ndcg@k."""

    def __post_init__(self) -> None:
        checks = {
            "factors": self.factors >= 1,
            "regularization": self.regularization >= 0,
            "iterations": self.iterations >= 1,
            "alpha": self.alpha > 0,
            "weighting": self.weighting in WEIGHTINGS,
            "heldout_fraction": 0 < self.heldout_fraction < 1,
            "eval_k": self.eval_k >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                allowed = f" (one of {', '.join(WEIGHTINGS)})" if name == "weighting" else ""
                raise ValueError(f"WALSConfig.{name}={getattr(self, name)!r} is invalid{allowed}")


@dataclass
class BehavioralModel:
    """Factors keyed by the original MovieLens ids: row i of user_factors is user_ids[i]."""

    user_ids: np.ndarray  # int64, sorted
    movie_ids: np.ndarray  # int64, sorted
    user_factors: np.ndarray  # float32 [n_users, factors]
    movie_factors: np.ndarray  # float32 [n_movies, factors]

    def _row(self, ids: np.ndarray, id_: int, what: str) -> int:
        i = int(np.searchsorted(ids, id_))
        if i == len(ids) or ids[i] != id_:
            raise KeyError(f"{what} {id_} has no ratings in the data this model was fitted on")
        return i

    def scores(self, user_id: int) -> np.ndarray:
        """Predicted preference of user_id for every movie in movie_ids (higher: more likely to enjoy)."""
        return self.movie_factors @ self.user_factors[self._row(self.user_ids, user_id, "user")]

    def similar_movies(self, movie_id: int, n: int = 5) -> list[tuple[int, float]]:
        """The n movies whose factors are closest in cosine, best first, without movie_id itself."""
        i = self._row(self.movie_ids, movie_id, "movie")
        unit = unit_rows(self.movie_factors)
        rows, sims = top_k(unit, unit[i], n, [i])
        return [(int(self.movie_ids[j]), float(s)) for j, s in zip(rows, sims)]


def _check(ratings: pd.DataFrame) -> None:
    if len(ratings) == 0:
        raise ValueError("ratings is empty: nothing to fit")
    missing = [c for c in REQUIRED_COLUMNS if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings is missing column(s) {missing}; needs {list(REQUIRED_COLUMNS)}")
    if not np.isfinite(ratings["rating"].to_numpy(np.float64)).all():
        raise ValueError("ratings has NaN or infinite values in column 'rating'")


def _confidence_matrix(ratings: pd.DataFrame, config: WALSConfig) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """users x movies CSR of confidences c_ui, plus the sorted original ids of its rows and columns."""
    _check(ratings)
    user_ids, rows = np.unique(ratings["userId"].to_numpy(np.int64), return_inverse=True)
    movie_ids, cols = np.unique(ratings["movieId"].to_numpy(np.int64), return_inverse=True)
    r = ratings["rating"].to_numpy(np.float32)
    if config.weighting == "binary":
        conf = np.full(len(r), 1 + config.alpha, dtype=np.float32)
    else:
        conf = (1 + config.alpha * (r / MAX_RATING)).astype(np.float32)
    # A duplicate (user, movie) pair would be summed by the CSR constructor; keep confidences honest.
    m = sp.csr_matrix((conf, (rows, cols)), shape=(len(user_ids), len(movie_ids)), dtype=np.float32)
    if m.nnz != len(r):
        raise ValueError(f"ratings has {len(r) - m.nnz} duplicate (userId, movieId) pairs")
    m.sort_indices()
    return m, user_ids, movie_ids


def _fit_matrix(conf: sp.csr_matrix, config: WALSConfig, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run implicit's CPU ALS on a confidence matrix; returns (user_factors, movie_factors) float32."""
    from implicit.cpu.als import AlternatingLeastSquares  # here: keeps importing this module cheap

    # implicit solves many small systems in parallel with its own threads; a multithreaded BLAS
    # underneath fights them for the cores (implicit warns about it at construction). The env var
    # above covers the usual case; the limit covers a caller who imported numpy before us.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=1.0,  # confidences are already in the matrix
            iterations=config.iterations,
            random_state=config.seed,
        )
        model.fit(conf, show_progress=progress)
    return np.ascontiguousarray(model.user_factors, np.float32), np.ascontiguousarray(model.item_factors, np.float32)


def fit_wals(ratings: pd.DataFrame, config: WALSConfig, progress: bool = True) -> BehavioralModel:
    """Fit weighted ALS on a ratings table (userId, movieId, rating); deterministic for a fixed seed."""
    conf, user_ids, movie_ids = _confidence_matrix(ratings, config)
    log.info("WALS on %d users x %d movies, %d ratings (%s)", *conf.shape, conf.nnz, config)
    user_factors, movie_factors = _fit_matrix(conf, config, progress)
    return BehavioralModel(user_ids, movie_ids, user_factors, movie_factors)


def _holdout(ratings: pd.DataFrame, config: WALSConfig) -> np.ndarray:
    """Boolean mask of held-out rows: per user with >= MIN_EVAL_RATINGS, round(f * n) random ratings."""
    rng = np.random.default_rng(config.seed)
    users = ratings["userId"].to_numpy(np.int64)
    order = np.lexsort((rng.random(len(users)), users))  # by user, random within user
    _, start, count = np.unique(users[order], return_index=True, return_counts=True)
    n = np.repeat(count, count)
    position = np.arange(len(users)) - np.repeat(start, count)
    # Round half up (not numpy's half-to-even), at least 1, and always leave one rating to train on.
    n_out = np.clip(np.floor(config.heldout_fraction * n + 0.5), 1, n - 1)
    held = np.zeros(len(users), dtype=bool)
    held[order] = (position < n_out) & (n >= MIN_EVAL_RATINGS)
    return held


def _ranking_metrics(top: np.ndarray, relevant: sp.csr_matrix, n_rel: np.ndarray, k: int) -> np.ndarray:
    """[precision, recall, ndcg] summed over users, for top-k movie columns per row of relevant."""
    # Hits by lookup of (row, column) keys instead of densifying a batch x movies matrix.
    width = relevant.shape[1]
    rel_keys = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr)) * width + relevant.indices
    hits = np.isin(np.arange(len(top))[:, None] * width + top, rel_keys).astype(np.float64)  # users x k
    discount = 1 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(discount)[np.minimum(n_rel, k) - 1]
    return np.array([hits.sum() / k, (hits.sum(1) / n_rel).sum(), (hits @ discount / idcg).sum()])


def evaluate_cf(ratings: pd.DataFrame, config: WALSConfig) -> dict:
    """Held-out ranking quality of WALS against a popularity baseline, on the same seeded split.

    Per user with >= 5 ratings, round(heldout_fraction * n) ratings (at least 1) are held out at
    random (seeded); WALS is fitted on the rest. Every movie with training ratings that the user did
    not rate in training is ranked. Relevant: held-out movies rated >= 4.0 (held-out movies rated
    lower are ordinary non-hits). Users with no relevant held-out movie are skipped; relevant movies
    without any training rating can't be ranked by either model and still count in recall/ndcg's
    denominators. precision@k = hits / k, recall@k = hits / relevant, ndcg@k with binary gains.
    Popularity ranks movies by their number of training ratings.
    """
    _check(ratings)
    held = _holdout(ratings, config)
    train, test = ratings[~held], ratings[held]
    model = fit_wals(train, config, progress=False)
    seen, _, _ = _confidence_matrix(train, config)  # rows/cols follow model.user_ids / movie_ids
    # Popularity as a score: n_movies - rank by training count, ties to the lower movieId (distinct
    # integers, so the top-k below never depends on how argpartition orders ties).
    by_count = np.argsort(-np.diff(seen.tocsc().indptr), kind="stable")
    popularity = np.empty(len(by_count), np.float32)
    popularity[by_count] = np.arange(len(by_count), 0, -1)

    test = test[test["rating"].to_numpy() >= RELEVANT_RATING]
    col = np.searchsorted(model.movie_ids, test["movieId"].to_numpy(np.int64))
    col = np.minimum(col, len(model.movie_ids) - 1)
    in_catalog = model.movie_ids[col] == test["movieId"].to_numpy(np.int64)
    eval_users, n_relevant = np.unique(test["userId"].to_numpy(np.int64), return_counts=True)
    if len(eval_users) == 0:
        raise ValueError(f"no user has a held-out rating >= {RELEVANT_RATING} (needs users with >= "
                         f"{MIN_EVAL_RATINGS} ratings): nothing to evaluate")
    user_row = np.searchsorted(model.user_ids, eval_users)  # every held-out user kept training ratings
    test_row = np.searchsorted(eval_users, test["userId"].to_numpy(np.int64))
    n_movies = len(model.movie_ids)
    # Only rankable movies go in the matrix; n_relevant still counts the others (fair to both models).
    relevant = sp.csr_matrix(
        (np.ones(in_catalog.sum(), np.float32), (test_row[in_catalog], col[in_catalog])),
        shape=(len(eval_users), n_movies),
    )

    k = min(config.eval_k, n_movies)
    totals = {"wals": np.zeros(3), "popularity": np.zeros(3)}
    for lo in range(0, len(eval_users), EVAL_BATCH):
        rows = user_row[lo : lo + EVAL_BATCH]
        rel = relevant[lo : lo + EVAL_BATCH]
        already = seen[rows]
        already = (np.repeat(np.arange(len(rows)), np.diff(already.indptr)), already.indices)
        for name, scores in (
            ("wals", model.user_factors[rows] @ model.movie_factors.T),
            ("popularity", np.tile(popularity, (len(rows), 1))),
        ):
            scores[already] = -np.inf  # never recommend what the user rated in training
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1, kind="stable"), 1)
            totals[name] += _ranking_metrics(top, rel, n_relevant[lo : lo + EVAL_BATCH], k)
    n = len(eval_users)
    result = {"k": k, "users": n, "heldout_ratings": int(held.sum()), "relevant": int(len(test))}
    for name, t in totals.items():
        result[name] = {m: float(v / n) for m, v in zip(("precision", "recall", "ndcg"), t)}
    return result


__all__ = ["WALSConfig", "BehavioralModel", "fit_wals", "evaluate_cf"]
