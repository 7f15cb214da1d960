"""elm.metrics.behavioral_consistency: NDCG@k, CF relevance, BC and its random-ranking reference."""

from __future__ import annotations

import numpy as np
import pytest

from elm.metrics.behavioral_consistency import (
    DEFAULT_K,
    behavioral_consistency,
    movie_relevance,
    ndcg_at_k,
    random_ranking_ndcg,
    user_relevance,
)


def test_ranking_by_the_relevance_itself_is_perfect():
    rel = np.random.default_rng(0).random((5, 30))
    assert np.allclose(ndcg_at_k(rel, rel, k=10), 1.0)
    assert ndcg_at_k(np.array([3.0, 2, 1, 0]), np.array([3.0, 2, 1, 0])) == pytest.approx(1.0)


def test_reversed_ranking_by_hand():
    gains = np.array([3.0, 2.0, 1.0, 0.0])
    # Reversed: positions 0..3 hold gains 0, 1, 2, 3; discounts 1/log2(2), 1/log2(3), 1/log2(4), 1/log2(5).
    dcg = 0 / 1 + 1 / np.log2(3) + 2 / 2 + 3 / np.log2(5)
    idcg = 3 / 1 + 2 / np.log2(3) + 1 / 2 + 0 / np.log2(5)
    assert ndcg_at_k(-gains, gains, k=4) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(-gains, gains, k=4) == pytest.approx(0.61383, abs=1e-5)


def test_k_truncation_and_k_beyond_m():
    gains = np.array([3.0, 2.0, 1.0, 0.0])
    scores = np.array([0.0, 1.0, 2.0, 3.0])  # reversed
    # k = 2: only the zero and the one make the top 2.
    assert ndcg_at_k(scores, gains, k=2) == pytest.approx((1 / np.log2(3)) / (3 + 2 / np.log2(3)))
    assert ndcg_at_k(scores, gains, k=100) == pytest.approx(ndcg_at_k(scores, gains, k=4))
    # The best item at rank 1 is all that matters for k = 1.
    assert ndcg_at_k(np.array([5.0, 0, 0, 0]), gains, k=1) == pytest.approx(1.0)


def test_ties_break_by_index():
    gains = np.array([0.0, 1.0])
    assert ndcg_at_k(np.zeros(2), gains, k=1) == pytest.approx(0.0)
    assert ndcg_at_k(np.zeros(2), gains[::-1], k=1) == pytest.approx(1.0)


def test_negative_relevance_is_clipped_to_zero():
    rel = np.array([-5.0, 1.0, -1.0, 2.0])
    clipped = np.clip(rel, 0, None)
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    assert ndcg_at_k(scores, rel, k=4) == pytest.approx(ndcg_at_k(scores, clipped, k=4))
    assert 0 < ndcg_at_k(scores, rel, k=4) < 1


def test_no_relevant_candidate_gives_nan():
    out = ndcg_at_k(np.random.default_rng(0).random((3, 6)), np.array([[0.0] * 6, [-1.0] * 6, [0, 0, 1, 0, 0, 0]]))
    assert np.isnan(out[0]) and np.isnan(out[1]) and np.isfinite(out[2])


def test_ndcg_errors():
    with pytest.raises(ValueError, match="shape"):
        ndcg_at_k(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(np.zeros(3), np.ones(3), k=0)
    with pytest.raises(ValueError, match="finite"):
        ndcg_at_k(np.array([np.nan, 1.0]), np.ones(2))
    with pytest.raises(ValueError, match="candidates"):
        ndcg_at_k(np.zeros((2, 0)), np.zeros((2, 0)))


def test_relevances():
    rng = np.random.default_rng(1)
    users, movies = rng.normal(size=(3, 8)), rng.normal(size=(10, 8))
    assert np.allclose(user_relevance(users, movies), users @ movies.T)
    cos = movie_relevance(movies[:4], movies)
    assert cos.shape == (4, 10)
    assert np.allclose(np.diag(cos[:, :4]), 1.0) and np.all(np.abs(cos) <= 1 + 1e-12)
    with pytest.raises(ValueError, match="8 factors.*5"):
        user_relevance(users, movies[:, :5])
    with pytest.raises(ValueError, match="8 factors.*5"):
        movie_relevance(movies, movies[:, :5])


def test_random_reference():
    rel = np.random.default_rng(2).random((50, 200)) ** 4
    ref = random_ranking_ndcg(rel, k=DEFAULT_K, seed=3)
    assert ref.shape == (50,)
    assert 0 < ref.mean() < 0.7
    assert np.array_equal(ref, random_ranking_ndcg(rel, k=DEFAULT_K, seed=3))
    assert not np.array_equal(ref, random_ranking_ndcg(rel, k=DEFAULT_K, seed=4))


def test_bc_is_high_when_the_text_lands_on_the_relevant_movie():
    rng = np.random.default_rng(5)
    candidates = rng.normal(size=(100, 32))
    j = 17
    relevance = np.zeros((1, 100))
    relevance[0, j] = 1.0
    # Neighbours in the semantic space share some of the relevance, as a CF neighbourhood would.
    relevance[0] += 0.1 * np.clip(candidates @ candidates[j] / np.linalg.norm(candidates[j]) ** 2, 0, None)
    bc = behavioral_consistency(candidates[[j]], candidates, relevance)
    ref = random_ranking_ndcg(relevance)
    assert bc.shape == (1,)
    assert bc[0] > 0.9 > ref[0]


def test_bc_errors_name_the_dims():
    with pytest.raises(ValueError, match="dimension 384.*32"):
        behavioral_consistency(np.zeros((2, 384)), np.zeros((5, 32)), np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"\(2 texts, 5 candidates\)"):
        behavioral_consistency(np.ones((2, 32)), np.ones((5, 32)), np.ones((2, 4)))
