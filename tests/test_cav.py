"""elm.evaluate.cav: soft-attribute labels for movies and users, and concept activation vectors fitted on them."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from elm.evaluate.cav import CAV, Attribute, CAVError, fit_cav, movie_labels, parse_attribute, user_labels
from elm.vectors import Vectors


def planted(n=400, d=16, seed=0):
    """Gaussian points labelled by a hidden unit direction u (x . u > 0.3), 3% of labels flipped."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = x @ u > 0.3
    flip = rng.random(n) < 0.03
    ids = np.arange(100, 100 + n, dtype=np.int64)
    return Vectors("movieId", ids, x), pd.Series(y ^ flip, index=ids), u


@pytest.fixture(scope="module")
def cav_and_u():
    vectors, labels, u = planted()
    return fit_cav(vectors, labels, vectors.ids[::4], attribute="tag:planted", space="synthetic"), u, vectors


def test_planted_direction_is_recovered(cav_and_u):
    cav, u, _ = cav_and_u
    assert cav.direction.dtype == np.float32
    assert np.linalg.norm(cav.direction) == pytest.approx(1.0, abs=1e-5)
    assert float(cav.direction @ u) > 0.9
    assert cav.heldout_accuracy > 0.85 and cav.heldout_balanced_accuracy > 0.85
    assert cav.n_heldout == 100 and cav.n_pos + cav.n_neg == 300
    assert cav.scale > 0


def test_move_and_probability(cav_and_u):
    cav, _, vectors = cav_and_u
    x = vectors.matrix[:5]
    assert np.array_equal(cav.move(x, 0.0), x)
    assert cav.move(x, 1.0).dtype == np.float32
    # One step of alpha = 1 moves the projection onto the direction by one standard deviation.
    step = (cav.move(x, 1.0) - x) @ cav.direction
    assert np.allclose(step, cav.scale, rtol=1e-4)
    probs = np.stack([cav.probability(cav.move(x, a)) for a in (-2, -1, 0, 1, 2, 4)])
    assert probs.shape == (6, 5)
    assert np.all(np.diff(probs, axis=0) > 0)
    assert isinstance(cav.probability(x[0]), float)
    assert cav.move(x[0], 2.0).shape == x[0].shape
    with pytest.raises(ValueError, match="dimension 16"):
        cav.move(np.zeros((2, 8)), 1.0)


def test_to_row_is_scalars(cav_and_u):
    row = cav_and_u[0].to_row()
    assert row["attribute"] == "tag:planted" and row["space"] == "synthetic" and row["dim"] == 16
    assert all(np.isscalar(v) for v in row.values())
    pd.DataFrame([row]).to_parquet(io.BytesIO())  # fits a Parquet table


def test_too_few_positives_names_attribute_and_counts():
    vectors, labels, _ = planted()
    labels[:] = False
    labels.iloc[:5] = True  # 5 positives, at most 5 of them in training
    with pytest.raises(CAVError, match=r"tag:rare in behavioral: [0-5] positives .* at least 10"):
        fit_cav(vectors, labels, vectors.ids[-50:], attribute="tag:rare", space="behavioral")
    with pytest.raises(CAVError, match="negatives"):
        fit_cav(vectors, ~labels, vectors.ids[-50:], attribute="tag:rare", space="behavioral")


def test_nothing_held_out_and_one_class_held_out():
    vectors, labels, _ = planted()
    with pytest.raises(CAVError, match="no held-out"):
        fit_cav(vectors, labels, [1, 2, 3], attribute="tag:x", space="s")
    one_class = vectors.ids[labels.to_numpy()][:5]
    cav = fit_cav(vectors, labels, one_class, attribute="tag:x", space="s")
    assert np.isnan(cav.heldout_balanced_accuracy) and cav.n_heldout == 5
    assert isinstance(cav, CAV)


def test_only_entities_with_vectors_and_labels_count():
    vectors, labels, _ = planted()
    extra = pd.Series([True] * 20, index=np.arange(10_000, 10_020))  # labelled, no vectors
    cav = fit_cav(vectors, pd.concat([labels.iloc[:300], extra]), vectors.ids[:60], attribute="tag:x", space="s")
    assert cav.n_pos + cav.n_neg == 240 and cav.n_heldout == 60


def test_parse_attribute():
    assert parse_attribute("genre:Comedy") == Attribute("genre", "Comedy")
    assert parse_attribute(" Tag: funny ").key == "tag:funny"
    assert parse_attribute(Attribute("tag", "x")) == Attribute("tag", "x")
    for bad in ("Comedy", "mood:happy", "genre:", ""):
        with pytest.raises(ValueError, match="genre:<name>.*tag:<name>"):
            parse_attribute(bad)


@pytest.fixture(scope="module")
def small(shared_movielens):
    d = shared_movielens / "ml-latest-small"
    movies = pd.read_csv(d / "movies.csv")
    movies["genres"] = movies["genres"].str.split("|")
    return movies, pd.read_csv(d / "tags.csv"), pd.read_csv(d / "ratings.csv")


def test_movie_labels_on_movielens(small):
    movies, tags, _ = small
    comedy = movie_labels("genre:comedy", movies)
    assert comedy.dtype == bool and comedy.index.name == "movieId" and len(comedy) == len(movies)
    assert 3000 < comedy.sum() < 5000
    funny = movie_labels("tag:funny", movies, tags)
    assert 15 <= funny.sum() <= 30 and len(funny) == len(movies)
    with pytest.raises(ValueError, match="known genres include.*Comedy"):
        movie_labels("genre:Nope", movies)
    with pytest.raises(ValueError, match="no user applied"):
        movie_labels("tag:zzz-not-a-tag", movies, tags)
    with pytest.raises(ValueError, match="needs the tags table"):
        movie_labels("tag:funny", movies)
    raw = movies.assign(genres=movies["genres"].str.join("|"))
    with pytest.raises(ValueError, match="split"):
        movie_labels("genre:Comedy", raw)


def test_genome_labels_when_the_genome_has_the_tag():
    movies = pd.DataFrame({"movieId": [1, 2, 3, 4], "title": list("abcd"), "genres": [["Comedy"]] * 4})
    genome_tags = pd.DataFrame({"tagId": [7, 8], "tag": ["funny", "dark"]})
    genome_scores = pd.DataFrame({"movieId": [1, 2, 3, 1, 2, 3], "tagId": [7, 7, 7, 8, 8, 8],
                                  "relevance": [0.9, 0.5, 0.1, 0.0, 0.0, 0.0]})
    tags = pd.DataFrame({"userId": [1], "movieId": [4], "tag": ["Scary "], "timestamp": [0]})
    out = movie_labels("tag:Funny", movies, tags, genome_scores, genome_tags)
    assert out.to_dict() == {1: True, 2: True, 3: False}  # movie 4 has no genome score: unlabelled
    # A tag the genome lacks falls back to user tags.
    assert movie_labels("tag:scary", movies, tags, genome_scores, genome_tags).to_dict() == {
        1: False, 2: False, 3: False, 4: True}


def test_user_labels_on_movielens(small):
    movies, _, ratings = small
    horror = user_labels("genre:Horror", ratings, movie_labels("genre:Horror", movies))
    assert horror.dtype == bool and horror.index.name == "userId"
    assert len(horror) > 0.95 * ratings["userId"].nunique()
    assert 0.2 < horror.mean() < 0.3
