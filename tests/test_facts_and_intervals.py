"""Facts read back from texts (elm/metrics/facts.py) and bootstrap intervals (elm/metrics/bootstrap.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from elm.metrics.bootstrap import interval, mean_interval
from elm.metrics.facts import fact_scores, stated_decades, stated_genres
from elm.metrics.semantic_consistency import others_mean


def test_decades_in_the_forms_texts_use():
    assert stated_decades("A drama from the late 1970s, remade in the 2000s.") == [1970, 2000]
    assert stated_decades("a '90s comedy") == [1990]
    assert stated_decades("made in 1994 for 300 people, 1950s style") == [1950]  # a year is not a decade
    assert stated_decades("") == []


def test_genres_by_their_prose_names():
    assert stated_genres("A funny animated adventure for the whole family") == {"Animation", "Adventure", "Children"}
    assert stated_genres("Science-fiction suspense with a touch of film noir") == {"Sci-Fi", "Thriller", "Film-Noir"}
    assert stated_genres("A wartime story") == set()  # whole words only


def test_fact_scores_against_the_movie():
    text = "A comedy from the mid 1990s that mixes adventure and animation."
    s = fact_scores(text, 1995.0, ["Adventure", "Animation", "Children", "Comedy"])
    assert s["decade"] == 1.0
    assert s["genre_precision"] == 1.0 and s["genre_recall"] == 0.75
    assert s["genre_f1"] == pytest.approx(2 * 0.75 / 1.75)
    wrong = fact_scores(text, 1974, ["Horror"])
    assert wrong["decade"] == 0.0 and wrong["genre_f1"] == 0.0
    silent = fact_scores("A story about people.", 1995, ["Drama"])
    assert silent["decade"] == 0.0 and silent["genre_f1"] == 0.0 and np.isnan(silent["genre_precision"])
    assert np.isnan(fact_scores(text, float("nan"), [])["decade"])


def test_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 200
    for t in range(trials):
        x = rng.exponential(2.0, 40)  # skewed, as per-movie scores are; true mean 2.0
        _, lo, hi = mean_interval(x, n_boot=400, seed=t)
        hits += lo <= 2.0 <= hi
    assert 0.88 <= hits / trials <= 0.99, hits / trials


def test_intervals_need_two_entities_and_a_defined_statistic():
    assert np.isnan(interval(lambda i: 1.0, 1)).all()
    assert np.isnan(interval(lambda i: np.nan, 10)).all()
    m, lo, hi = mean_interval([1.0, np.nan, 3.0, 2.0])
    assert m == 2.0 and lo < 2.0 < hi


def test_the_shuffled_reference_is_the_mean_over_every_other_row():
    rng = np.random.default_rng(0)
    texts, vectors = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    cos = unit(texts) @ unit(vectors).T
    expected = [np.mean([cos[i, j] for j in range(5) if j != i]) for i in range(5)]
    assert others_mean(texts, vectors) == pytest.approx(expected, abs=1e-6)
    # a text that ignores its input (the same text everywhere) is as close to its own row as to the others
    same = np.repeat(texts[:1], 5, axis=0)
    own = np.einsum("ij,ij->i", unit(same), unit(vectors))
    assert (own - others_mean(same, vectors)).mean() == pytest.approx(0, abs=1e-6)
    assert np.isnan(others_mean(texts[:1], vectors[:1])).all()  # one row has no other to compare with


def test_an_interpolation_interval_resamples_distinct_mixed_vectors():
    """Ten pairs around one anchor are one vector (and one text) at a = 0: no interval there, rather than the
    zero-width one that resampling ten copies of one score draws; in between, every pair is its own vector."""
    from elm.report.intervals import mix_interval

    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"entity_id": 356, "partner_id": np.arange(10), "sc": 0.4})
    assert np.isnan(mix_interval(pairs, "sc", 0.0, seed=0)).all()
    mid = pairs.assign(sc=rng.normal(0.4, 0.05, 10))
    lo, hi = mix_interval(mid, "sc", 0.5, seed=0)
    assert lo < mid["sc"].mean() < hi
    end = pairs.assign(sc=rng.normal(0.4, 0.05, 10))  # a = 1: ten different movies
    assert np.isfinite(mix_interval(end, "sc", 1.0, seed=0)).all()
