"""Interpolation between two entities (docs/METHOD.md, "Experiments"): w = (1 - a) w_A + a w_B, a in [0, 1].

At a = 0 and a = 1 the mixed vector is exactly the entity's own vector, so the ends of an interpolation
curve are the ELM describing real movies (or users); in between it describes movies nobody made.
The mix is linear and not renormalised: the adapter's input LayerNorm ignores scale, and for users the CF
score of the mixed vector is then exactly the mix of the two users' scores.

Which pairs: the paper shows pairs with "Forrest Gump"; we pair an anchor movie (Forrest Gump when the
dataset has it, else the most rated movie) with the most rated movies that share none of its genres, so
that the two ends differ and the middle is worth describing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def lerp(a: np.ndarray, b: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """(1 - weight) * a + weight * b, float32; weight a scalar or one per row."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"interpolation: vectors of shape {a.shape} and {b.shape} differ")
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 1 and a.ndim == 2:
        w = w[:, None]
    return ((1 - w) * a + w * b).astype(np.float32)


def check_alphas(alphas: Sequence[float], what: str = "alphas") -> None:
    if not len(alphas) or any(not 0.0 <= float(a) <= 1.0 for a in alphas):
        raise ValueError(f"{what} must be a non-empty list of weights in [0, 1], got {list(alphas)}")


def anchor_movie(movies: pd.DataFrame, counts: pd.Series, anchor: str, candidates: Sequence[int]) -> int:
    """The movie whose title starts with ``anchor`` (the most rated one if several), else the most rated."""
    pool = movies[movies["movieId"].isin(candidates)]
    named = pool[pool["title"].str.lower().str.startswith(anchor.lower())] if anchor else pool.iloc[:0]
    pick = named if len(named) else pool
    if pick.empty:
        raise ValueError("interpolation: no candidate movie to anchor the pairs on")
    return int(pick.assign(n=pick["movieId"].map(counts).fillna(0)).sort_values(["n", "movieId"],
                                                                              ascending=[False, True]).iloc[0]["movieId"])


def movie_pairs(movies: pd.DataFrame, ratings: pd.DataFrame, anchor: str, n: int,
                candidates: Sequence[int]) -> list[tuple[int, int]]:
    """``n`` pairs (anchor, partner): partners are the most rated candidates sharing no genre with the anchor
    (falling back to the most rated others), one per leading genre so that the pairs differ."""
    counts = ratings["movieId"].value_counts()
    a = anchor_movie(movies, counts, anchor, candidates)
    genres = movies.set_index("movieId")["genres"].map(lambda g: set(map(str, g)))
    pool = (movies[movies["movieId"].isin(candidates) & (movies["movieId"] != a)]
            .assign(n=lambda d: d["movieId"].map(counts).fillna(0))
            .sort_values(["n", "movieId"], ascending=[False, True]))
    disjoint = pool[pool["movieId"].map(lambda m: not (genres[m] & genres[a]))]
    ordered = [int(m) for m in dict.fromkeys([*disjoint["movieId"], *pool["movieId"]])]
    partners, leads = [], set()
    for m in ordered:  # one partner per leading genre first, so the pairs differ from each other too
        lead = min(genres[m], default="")
        if len(partners) < n and lead not in leads:
            partners.append(m)
            leads.add(lead)
    partners += [m for m in ordered if m not in partners][: n - len(partners)]
    return [(a, p) for p in partners]


def user_pairs(user_ids: Sequence[int], n: int) -> list[tuple[int, int]]:
    """``n`` disjoint pairs from the given (already shuffled) users, in order."""
    ids = [int(u) for u in user_ids]
    return [(ids[2 * i], ids[2 * i + 1]) for i in range(min(n, len(ids) // 2))]
