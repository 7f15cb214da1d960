from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import threadpoolctl

from elm.embed.behavioral import BehavioralModel, WALSConfig, evaluate_cf, fit_wals

from .conftest import REPO

FAST = WALSConfig(factors=8, iterations=3)


@pytest.fixture(scope="module")
def toy_ratings() -> pd.DataFrame:
    """60 users x 40 movies, ~30% rated, with non-contiguous ids given in shuffled order."""
    rng = np.random.default_rng(7)
    users, movies = np.nonzero(rng.random((60, 40)) < 0.3)
    df = pd.DataFrame({
        "userId": (users * 3 + 10).astype(np.int32),
        "movieId": (movies * 7 + 100).astype(np.int32),
        "rating": (rng.integers(1, 11, len(users)) / 2).astype(np.float32),
        "timestamp": rng.integers(8e8, 1.5e9, len(users)).astype(np.int64),
    })
    return df.sample(frac=1, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def small_tables(small_ingest) -> tuple[pd.DataFrame, pd.DataFrame]:
    _, art = small_ingest
    return pd.read_parquet(art.file("ratings.parquet")), pd.read_parquet(art.file("movies.parquet"))


@pytest.fixture(scope="module")
def small_model(small_tables) -> BehavioralModel:
    return fit_wals(small_tables[0], WALSConfig(), progress=False)


def test_shapes_and_ids(toy_ratings):
    m = fit_wals(toy_ratings, FAST, progress=False)
    assert np.array_equal(m.user_ids, np.sort(toy_ratings["userId"].unique()))
    assert np.array_equal(m.movie_ids, np.sort(toy_ratings["movieId"].unique()))
    assert m.user_ids.dtype == m.movie_ids.dtype == np.int64
    assert m.user_factors.shape == (len(m.user_ids), 8) and m.movie_factors.shape == (len(m.movie_ids), 8)
    assert m.user_factors.dtype == m.movie_factors.dtype == np.float32
    assert np.isfinite(m.user_factors).all() and np.isfinite(m.movie_factors).all()

    u = int(m.user_ids[5])
    assert np.allclose(m.scores(u), m.movie_factors @ m.user_factors[5])
    neighbours = m.similar_movies(int(m.movie_ids[0]), n=5)
    assert len(neighbours) == 5 and int(m.movie_ids[0]) not in [mid for mid, _ in neighbours]
    sims = [s for _, s in neighbours]
    assert sims == sorted(sims, reverse=True) and all(-1 - 1e-6 <= s <= 1 + 1e-6 for s in sims)
    with pytest.raises(KeyError, match="no ratings"):
        m.scores(-1)


def test_deterministic_for_a_seed(toy_ratings):
    a = fit_wals(toy_ratings, FAST, progress=False)
    b = fit_wals(toy_ratings, FAST, progress=False)
    c = fit_wals(toy_ratings, WALSConfig(factors=8, iterations=3, seed=1), progress=False)
    assert np.array_equal(a.user_factors, b.user_factors) and np.array_equal(a.movie_factors, b.movie_factors)
    assert not np.allclose(a.movie_factors, c.movie_factors)


def test_binary_weighting_ignores_rating_values(toy_ratings):
    flat = toy_ratings.assign(rating=np.float32(3.0))
    binary = WALSConfig(factors=8, iterations=3, weighting="binary")
    same = fit_wals(toy_ratings, binary, False).movie_factors, fit_wals(flat, binary, False).movie_factors
    assert np.array_equal(*same)
    assert not np.allclose(fit_wals(toy_ratings, FAST, False).movie_factors, fit_wals(flat, FAST, False).movie_factors)


def test_bad_input(toy_ratings):
    with pytest.raises(ValueError, match="empty"):
        fit_wals(toy_ratings.iloc[:0], FAST)
    with pytest.raises(ValueError, match="empty"):
        evaluate_cf(toy_ratings.iloc[:0], FAST)
    with pytest.raises(ValueError, match="movieId"):
        fit_wals(toy_ratings.drop(columns="movieId"), FAST)
    with pytest.raises(ValueError, match="duplicate"):
        fit_wals(pd.concat([toy_ratings, toy_ratings.iloc[:3]]), FAST)


@pytest.mark.parametrize("field, value", [
    ("factors", 0), ("iterations", 0), ("regularization", -0.1), ("alpha", 0.0), ("weighting", "stars"),
    ("heldout_fraction", 0.0), ("heldout_fraction", 1.0), ("eval_k", 0),
])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        WALSConfig(**{field: value})


def test_no_blas_thread_warning(toy_ratings, monkeypatch):
    """implicit warns (once per process) if BLAS is multithreaded; fit_wals must keep it quiet."""
    import implicit.utils

    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    with threadpoolctl.threadpool_limits(2, "blas"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_wals(toy_ratings, FAST, progress=False)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


def test_no_blas_thread_warning_when_numpy_came_first():
    """A caller that loaded numpy (multithreaded OpenBLAS) before elm.embed.behavioral sees no warning."""
    code = (
        "import numpy, pandas as pd\n"
        "from elm.embed.behavioral import WALSConfig, fit_wals\n"
        "df = pd.DataFrame({'userId': [1, 1, 2, 2, 3], 'movieId': [1, 2, 1, 3, 2], 'rating': [4.0, 3, 5, 2, 1]})\n"
        "fit_wals(df, WALSConfig(factors=4, iterations=2), progress=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    env["OPENBLAS_NUM_THREADS"] = "2"  # as a 2+ core machine without the variable would get
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OpenBLAS" not in out.stderr, out.stderr


def test_cf_beats_popularity_on_ml_latest_small(small_tables):
    result = evaluate_cf(small_tables[0], WALSConfig())
    assert result["k"] == 10 and result["users"] > 500
    wals, pop = result["wals"], result["popularity"]
    assert all(0 <= v <= 1 for v in [*wals.values(), *pop.values()])
    assert wals["ndcg"] > 1.3 * pop["ndcg"], result
    assert wals["precision"] > pop["precision"] and wals["recall"] > pop["recall"], result


def test_toy_story_neighbours_are_family_films(small_model, small_tables):
    genres = small_tables[1].set_index("movieId")["genres"]
    neighbours = small_model.similar_movies(1, n=10)  # Toy Story (1995)
    assert len(neighbours) == 10 and 1 not in [mid for mid, _ in neighbours]
    family = [mid for mid, _ in neighbours if {"Animation", "Children"} & set(genres.loc[mid])]
    assert len(family) >= 2, neighbours
