import pandas as pd
import pytest

from elm.artifacts import ArtifactError, ArtifactStore
from elm.embed.behavioral import WALSConfig
from elm.embed.stage import (EmbeddingsConfig, SplitConfig, build_behavioral, load_movie_vectors, report,
                            run_embeddings)
from elm.data.ingest import IngestConfig, ingest
from elm.vectors import VectorError, read

FAST = EmbeddingsConfig(wals=WALSConfig(factors=32, iterations=8))


# small_embeddings (tests/conftest.py) uses the same FAST config, so run_embeddings(..., FAST) is a cache hit.


def test_shapes_ids_and_split_coverage(small_embeddings):
    store, ingest_art, arts = small_embeddings
    movies = pd.read_parquet(ingest_art.file("movies.parquet"))
    ratings = pd.read_parquet(ingest_art.file("ratings.parquet"))
    sem = load_movie_vectors(arts["semantic"], expected_dim=384)
    beh = load_movie_vectors(arts["behavioral"], expected_dim=32)
    users = read(arts["behavioral"].file("users.parquet"), expected_dim=32)
    assert len(sem.ids) == 9742 and set(sem.ids) == set(movies["movieId"])
    assert len(beh.ids) == ratings["movieId"].nunique() == 9724
    assert len(users.ids) == 610
    split = pd.read_parquet(arts["splits"].file("movies.parquet"))
    held = split.loc[split.split == "heldout", "movieId"]
    assert 700 < len(held) < 1250
    assert set(held) <= set(sem.ids)  # held-out movies still get vectors
    assert len(set(held) & set(beh.ids)) > 0.95 * len(held)


def test_rerun_is_cache_hit(small_embeddings):
    store, ingest_art, arts = small_embeddings
    again = run_embeddings(ingest_art, FAST, store)
    assert all(hit for _, hit in again.values())
    assert {k: a.version for k, (a, _) in again.items()} == {k: a.version for k, a in arts.items()}


def test_report_has_cf_metrics_and_neighbours(small_embeddings):
    _, _, arts = small_embeddings
    text = report(arts)
    assert "wals" in text and "popularity" in text
    assert "behavioral neighbours of Toy Story (1995)" in text and "semantic neighbours of The Matrix (1999)" in text
    sem_nb = pd.read_parquet(arts["semantic"].file("neighbours.parquet"))
    assert sem_nb.groupby("query_movieId").size().tolist() == [5, 5, 5]


def test_movie_without_ratings_has_a_clear_error(small_embeddings):
    _, ingest_art, arts = small_embeddings
    movies = pd.read_parquet(ingest_art.file("movies.parquet"))
    ratings = pd.read_parquet(ingest_art.file("ratings.parquet"))
    unrated = int(movies.loc[~movies.movieId.isin(ratings.movieId), "movieId"].iloc[0])
    assert arts["behavioral"].summary["movies_without_ratings"] == 18
    with pytest.raises(KeyError, match=f"unknown movieId.*{unrated}"):
        load_movie_vectors(arts["behavioral"]).get([unrated])


def test_dimension_mismatch_between_artifact_and_config(small_embeddings):
    _, _, arts = small_embeddings
    with pytest.raises(VectorError, match=f"behavioral/{arts['behavioral'].version}.*dimension 32, expected 64"):
        load_movie_vectors(arts["behavioral"], expected_dim=64)


def test_corrupt_input_artifact_publishes_nothing(small_ingest, tmp_path):
    import shutil

    _, good = small_ingest
    store = ArtifactStore(tmp_path / "a")
    copy = tmp_path / "a" / "ingest" / good.version
    shutil.copytree(good.path, copy)
    (copy / "ratings.parquet").write_bytes(b"PAR1 not really")
    broken = store.get("ingest", good.version)
    with pytest.raises(ArtifactError, match="ratings.parquet does not match its manifest"):
        build_behavioral(broken, FAST.wals, store)
    assert store.versions("behavioral") == []


def test_empty_ratings_is_a_clear_error(tmp_path):
    src = tmp_path / "ml-latest-small"
    from tests.test_ingest import _copy_small

    src = _copy_small(tmp_path)
    (src / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    store = ArtifactStore(tmp_path / "a")
    with pytest.raises(Exception, match="(?i)ratings.*(empty|row_count)"):
        art, _ = ingest(IngestConfig(source=str(src), verify=False), store, tmp_path)
        build_behavioral(art, FAST.wals, store)
    assert store.versions("behavioral") == []


def test_bad_split_config():
    with pytest.raises(ValueError, match="SplitConfig.heldout_users"):
        SplitConfig(heldout_users=0.0)
