"""Weighted ALS at ml-25m scale: our fit_wals path against implicit used plainly, same run, same data.

    .venv/bin/python bench/bench_wals.py [--users 162541] [--movies 59047] [--nnz 25000095]
                                         [--iterations 3] [--repeats 2]
    .venv/bin/python bench/bench_wals.py --users 16000 --movies 6000 --nnz 2500000   # smoke run

The real ml-25m cannot be downloaded here, so a random ratings table with its shape and density is
generated: Zipf-like movie popularity (a few blockbusters, a long tail), log-normal user activity
(>= 20 ratings each, a few users with thousands) and ml-25m's half-star rating histogram. At full
size: median user 97 ratings (ml-25m: 71), median movie 12, top movie 59k (ml-25m: 81k).

Rows timed, each on that table:
  fit_wals      elm.embed.behavioral: ratings DataFrame -> confidence CSR (timed apart as "setup"), then
                implicit's CPU ALS with our defaults and BLAS limited to one thread.
  implicit      implicit.als.AlternatingLeastSquares() with its defaults (factors=100, ...) fitted on
                the rating-valued CSR, BLAS threads left as they are (OpenBLAS's default: all cores).
  implicit@ours the same, with fit_wals's factors: separates "our settings" from "fewer factors".
s/iter is the fit time (implicit.fit: transpose, init and the ALS sweeps) over the iterations, best
of --repeats runs taken in alternating order.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Deliberately NOT setting OPENBLAS_NUM_THREADS: the plain-implicit rows run as a plain user's would.
# (elm.embed.behavioral itself sets no BLAS default on import; its fit limits BLAS threads while it runs.)
ENV_BLAS = os.environ.get("OPENBLAS_NUM_THREADS")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import threadpoolctl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from elm.embed.behavioral import WALSConfig, _confidence_matrix, _fit_matrix  # noqa: E402

ML25M = dict(users=162_541, movies=59_047, nnz=25_000_095)


def sorted_unique(a: np.ndarray) -> np.ndarray:
    # np.unique takes a hash-table path in numpy 2.4 that is ~10x slower than sorting for this.
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]]


def make_ratings(users: int, movies: int, nnz: int, seed: int = 0) -> pd.DataFrame:
    """nnz unique (user, movie) pairs shaped like ml-25m's, with half-star ratings."""
    rng = np.random.default_rng(seed)
    nnz = min(nnz, users * movies)
    # Movie popularity ~ 1 / (rank + 300)^2: a head of blockbusters, then a long thin tail.
    # Ranks are shuffled over the columns.
    p = 1.0 / (np.arange(movies) + 301.0) ** 2
    p = (p / p.sum())[rng.permutation(movies)]
    # User activity: log-normal with ml-25m's median/mean ratio (71/154) over a floor of 20 ratings.
    floor = min(20, nnz // users)
    activity = rng.lognormal(0.0, 1.24, users)
    want = floor + activity / activity.sum() * (nnz - floor * users)
    # Draw pairs, merge duplicates, redraw the shortfall (users in proportion to their activity).
    draws = np.round(want).astype(np.int64)
    keys = sorted_unique(np.concatenate([
        np.repeat(np.arange(users), draws) * movies + rng.choice(movies, draws.sum(), p=p),
        rng.choice(users, movies) * movies + np.arange(movies),  # every movie rated at least once
    ]))
    while (short := nnz - len(keys)) > 0:
        extra = int(short * 1.2) + 1000
        u = rng.choice(users, extra, p=want / want.sum())
        keys = sorted_unique(np.concatenate([keys, u * movies + rng.choice(movies, extra, p=p)]))
    # Trim the excess at random, never a user's or a movie's first (so possibly only) rating.
    if len(keys) > nnz:
        user, movie = keys // movies, keys % movies
        by_movie = np.argsort(movie, kind="stable")
        keep = np.r_[True, user[1:] != user[:-1]]
        keep[by_movie[np.r_[True, movie[by_movie][1:] != movie[by_movie][:-1]]]] = True
        keys = np.delete(keys, rng.choice(np.flatnonzero(~keep), len(keys) - nnz, replace=False))
    # ml-25m's share of each half star, 0.5 .. 5.0.
    share = np.array([1.6, 3.1, 1.6, 6.6, 5.0, 19.6, 12.6, 26.6, 8.5, 14.5])
    stars = rng.choice(np.arange(1, 11), len(keys), p=share / share.sum())
    return pd.DataFrame({
        "userId": (keys // movies + 1).astype(np.int32),
        "movieId": (keys % movies + 1).astype(np.int32),
        "rating": (stars / 2).astype(np.float32),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=ML25M["users"], help="rows (ml-25m: 162,541 users)")
    ap.add_argument("--movies", type=int, default=ML25M["movies"], help="columns (ml-25m: 59,047 rated movies)")
    ap.add_argument("--nnz", type=int, default=ML25M["nnz"], help="ratings (ml-25m: 25,000,095)")
    ap.add_argument("--iterations", type=int, default=3, help="ALS iterations per fit (default 3)")
    ap.add_argument("--repeats", type=int, default=2, help="fits per path, best kept (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    blas = [(i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    print(f"cores {os.cpu_count()}, BLAS {blas}, OPENBLAS_NUM_THREADS={ENV_BLAS}")
    t = time.perf_counter()
    ratings = make_ratings(a.users, a.movies, a.nnz, a.seed)
    per_user = ratings.groupby("userId").size()
    per_movie = ratings.groupby("movieId").size()
    print(f"generated {len(ratings):,} ratings, {per_user.size:,} users x {per_movie.size:,} movies "
          f"(density {len(ratings) / a.users / a.movies:.4%}) in {time.perf_counter() - t:.1f}s; "
          f"ratings/user median {per_user.median():.0f} max {per_user.max():,}; "
          f"ratings/movie median {per_movie.median():.0f} max {per_movie.max():,}")

    cfg = WALSConfig(iterations=a.iterations)
    t = time.perf_counter()
    conf, _, _ = _confidence_matrix(ratings, cfg)  # fit_wals = this + _fit_matrix, timed apart
    setup = time.perf_counter() - t
    plain_csr = sp.csr_matrix(  # what a plain user would pass: the ratings as matrix values
        (ratings["rating"].to_numpy(), (ratings["userId"].to_numpy() - 1, ratings["movieId"].to_numpy() - 1)),
        shape=(a.users, a.movies), dtype=np.float32)
    del ratings

    def ours() -> None:
        _fit_matrix(conf, cfg, progress=False)

    def plain(**kw):
        from implicit.als import AlternatingLeastSquares  # the factory a plain user reaches for

        return lambda: AlternatingLeastSquares(iterations=a.iterations, random_state=0, **kw).fit(
            plain_csr, show_progress=False)

    blas_threads = blas[0][1] if blas else "?"
    paths = {  # name: (run, factors, BLAS threads, setup)
        "fit_wals": (ours, cfg.factors, 1, f"{setup:.1f}"),
        "implicit": (plain(), 100, blas_threads, "-"),
        "implicit@ours": (plain(factors=cfg.factors), cfg.factors, blas_threads, "-"),
    }
    # Best of --repeats, alternating the order so neither side always runs first (cold) or last.
    times = {name: [] for name in paths}
    cpu = {name: [] for name in paths}  # CPU seconds of all threads: spinning BLAS threads show up here
    for r in range(a.repeats):
        for name in list(paths)[:: 1 if r % 2 == 0 else -1]:
            t, c = time.perf_counter(), time.process_time()
            paths[name][0]()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            print(f"  round {r + 1}: {name:<14} {times[name][-1] / a.iterations:6.2f} s/iter, "
                  f"{cpu[name][-1] / a.iterations:6.2f} CPU s/iter", flush=True)

    base = min(times["implicit"]) / a.iterations
    print(f"\n{'path':<14}{'factors':>8}{'BLAS thr':>9}{'setup s':>9}{'fit s':>8}{'s/iter':>8}"
          f"{'worst s/iter':>13}{'CPU s/iter':>11}{'vs implicit':>12}")
    for name, (_, factors, threads, setup_s) in paths.items():
        fit, per, worst = min(times[name]), min(times[name]) / a.iterations, max(times[name]) / a.iterations
        c = min(cpu[name]) / a.iterations
        print(f"{name:<14}{factors:>8}{threads:>9}{setup_s:>9}{fit:>8.1f}{per:>8.2f}{worst:>13.2f}{c:>11.2f}"
              f"{per / base:>11.2f}x")
    print(f"\n{a.iterations} iterations per fit, best of {a.repeats}; fit_wals: regularization="
          f"{cfg.regularization}, alpha={cfg.alpha}, weighting={cfg.weighting}; "
          "implicit defaults: factors=100, regularization=0.01, alpha=1.0")


if __name__ == "__main__":
    main()
