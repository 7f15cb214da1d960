"""elm.embed.semantic: the packaged encoder, encode(), and the per-movie documents it embeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elm.embed import semantic
from elm.embed.semantic import DEFAULT_ENCODER, encode, load_encoder, load_extra_text, movie_documents, resolve_encoder_path


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def movielens(small_ingest):
    _, art = small_ingest
    return pd.read_parquet(art.file("movies.parquet")), pd.read_parquet(art.file("tags.parquet"))


@pytest.fixture(scope="module")
def docs(movielens):
    return movie_documents(*movielens)


def doc_of(docs: pd.DataFrame, movie_id: int) -> str:
    return docs.loc[docs["movieId"] == movie_id, "document"].item()


# -- encoder ------------------------------------------------------------------


def test_resolve_default_is_packaged_folder():
    path = Path(resolve_encoder_path(DEFAULT_ENCODER))
    assert path.is_dir() and (path / "modules.json").exists()
    assert resolve_encoder_path("sentence-transformers/all-MiniLM-L6-v2") == str(path)
    assert resolve_encoder_path(str(path)) == str(path)  # a local folder is itself
    assert resolve_encoder_path("someone/some-model") == "someone/some-model"  # a hub id passes through


def test_resolve_missing_local_path_raises(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        resolve_encoder_path(missing)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        resolve_encoder_path("./nothing-here")


@pytest.mark.slow
def test_load_encoder_is_cached(encoder):
    assert load_encoder() is encoder
    assert load_encoder("sentence-transformers/all-MiniLM-L6-v2") is encoder  # same folder, same key
    assert (semantic.resolve_encoder_path(DEFAULT_ENCODER), None) in semantic._cache


@pytest.mark.slow
def test_encode_shape_dtype_norm(encoder):
    x = encode(["a short one", "a somewhat longer sentence about movies", "third"], encoder, batch_size=2, progress=False)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    empty = encode([], encoder, progress=False)
    assert empty.shape == (0, 384) and empty.dtype == np.float32


@pytest.mark.slow
def test_encode_order_independent_of_batching(encoder):
    # encode sorts by length internally: rows must still come back in input order
    texts = ["x", "a much longer sentence than the others here", "mid length text", "y y"]
    a = encode(texts, encoder, batch_size=1, progress=False)
    b = encode(texts, encoder, batch_size=64, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-5)
    single = encode([texts[1]], encoder, progress=False)
    np.testing.assert_allclose(a[1], single[0], atol=1e-5)


@pytest.mark.slow
def test_encode_is_semantic(encoder):
    kids, cartoon, war = encode(
        ["a funny animated film for kids", "a cartoon comedy for children", "a brutal war documentary"],
        encoder, progress=False,
    )
    assert kids @ cartoon > kids @ war + 0.2


# -- documents ----------------------------------------------------------------


def test_documents_real_movielens(movielens, docs):
    movies, tags = movielens
    assert len(docs) == len(movies) == 9742
    assert list(docs.columns) == ["movieId", "document"]
    assert docs["movieId"].is_monotonic_increasing and docs["movieId"].is_unique
    assert docs["document"].str.len().gt(0).all()

    toy = doc_of(docs, 1)
    assert "Toy Story" in toy and "1995" in toy and "Animation" in toy
    toy_tags = set(tags.loc[tags["movieId"] == 1, "tag"].str.lower())
    assert any(t in toy for t in toy_tags)
    assert "The Matrix" in doc_of(docs, 2571)

    untagged = sorted(set(movies["movieId"]) - set(tags["movieId"]))[0]
    assert "Tags" not in doc_of(docs, untagged)


def test_documents_deterministic(movielens, docs):
    movies, tags = movielens
    shuffled = movie_documents(movies.sample(frac=1, random_state=0), tags.sample(frac=1, random_state=1))
    pd.testing.assert_frame_equal(docs, shuffled)


def test_documents_tag_ranking_and_bare_movies():
    movies = pd.DataFrame({"movieId": [2, 1], "title": ["", ""], "name": ["Bare", "Tagged"],
                           "year": [np.nan, 2001.0], "genres": [[], ["Drama"]]})
    tags = pd.DataFrame({"movieId": [1] * 6, "tag": ["  Zed", "zed", "Alpha", "beta ", "ALPHA", "gamma  ray"]})
    docs = movie_documents(movies, tags, max_tags=3)
    assert doc_of(docs, 1) == "Tagged (2001). Genres: Drama. Tags: alpha, zed, beta."  # count, then alphabet
    assert doc_of(docs, 2) == "Bare."


def test_documents_genome_and_extra_text(movielens):
    movies, tags = movielens
    scores = pd.DataFrame({"movieId": [1, 1, 1], "tagId": [10, 11, 12], "relevance": [0.2, 0.99, 0.7]})
    genome_tags = pd.DataFrame({"tagId": [10, 11, 12], "tag": ["dark", "toys", "friendship"]})
    extra = pd.DataFrame({"movieId": [1], "text": ["A cowboy doll feels replaced by a space ranger"]})
    docs = movie_documents(movies, tags, scores, genome_tags, extra_text=extra, genome_top=2)
    toy = doc_of(docs, 1)
    assert "Themes: toys, friendship." in toy and "dark" not in toy
    assert toy.endswith("A cowboy doll feels replaced by a space ranger.")
    assert "cowboy" not in doc_of(docs, 2)


def test_load_extra_text_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"movieId": [1, 2], "text": ["plot one", "plot two"], "source": ["a", "b"]})
    df.to_csv(tmp_path / "plots.csv", index=False)
    df.to_parquet(tmp_path / "plots.parquet")
    for name in ("plots.csv", "plots.parquet"):
        got = load_extra_text(str(tmp_path / name))
        assert list(got.columns) == ["movieId", "text"] and got["movieId"].dtype == np.int32
        assert got["text"].tolist() == ["plot one", "plot two"]


def test_load_extra_text_missing_column(tmp_path):
    pd.DataFrame({"movieId": [1], "plot": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv.*'text'"):
        load_extra_text(str(tmp_path / "bad.csv"))
