import functools
import http.server
import shutil
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from elm.data.ingest import IngestConfig, ingest
from elm.data.sources import EMBEDDED_DIR, SourceError
from elm.data.tables import TableFormatError
from elm.data.validation import DataValidationError

SMALL = EMBEDDED_DIR / "ml-latest-small"


def _copy_small(tmp_path: Path) -> Path:
    dst = tmp_path / "ml-latest-small"
    shutil.copytree(SMALL, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def _zip_of(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{folder.name}/{p.name}")
    return zip_path


def test_embedded_default_ingests_with_expected_counts_and_schema(small_ingest):
    store, art = small_ingest
    assert art.rows == {"links.parquet": 9742, "movies.parquet": 9742, "ratings.parquet": 100836, "tags.parquet": 3683}
    movies = pd.read_parquet(art.file("movies.parquet")).set_index("movieId")
    toy = movies.loc[1]
    assert toy["title"] == "Toy Story (1995)" and toy["name"] == "Toy Story" and toy["year"] == 1995
    assert list(toy["genres"]) == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert movies.loc[2571, "name"] == "The Matrix"
    ratings = pd.read_parquet(art.file("ratings.parquet"))
    assert str(ratings["rating"].dtype) == "float32" and ratings["userId"].nunique() == 610
    links = pd.read_parquet(art.file("links.parquet"))
    assert links.loc[links.movieId == 1, "imdbId"].item() == "0114709"  # leading zero kept
    art.verify()


def test_rerun_is_cache_hit(small_ingest, tmp_path):
    store, art = small_ingest
    again, hit = ingest(IngestConfig(), store, tmp_path)
    assert hit and again.version == art.version


def test_shared_copies_of_ml_latest_small_and_ml_100k(shared_movielens, store, tmp_path):
    small, _ = ingest(IngestConfig(source=str(shared_movielens / "ml-latest-small")), store, tmp_path)
    assert small.rows["ratings.parquet"] == 100836
    art, hit = ingest(IngestConfig(dataset="ml-100k", source=str(shared_movielens / "ml-100k")), store, tmp_path)
    assert not hit
    assert art.rows["ratings.parquet"] == 100000 and art.rows["movies.parquet"] == 1682
    movies = pd.read_parquet(art.file("movies.parquet")).set_index("movieId")
    assert movies.loc[1, "name"] == "Toy Story" and list(movies.loc[1, "genres"]) == ["Animation", "Children", "Comedy"]
    assert any("é" in t for t in movies["title"])  # Latin-1 decoded
    assert art.summary["users"] == 943


def test_mirror_env_var_is_used(shared_movielens, store, tmp_path, monkeypatch):
    monkeypatch.setenv("ELM_MOVIELENS_DIR", str(shared_movielens))
    art, _ = ingest(IngestConfig(dataset="ml-100k"), store, tmp_path)
    assert art.summary["origin"] == str((shared_movielens / "ml-100k").resolve())


def test_source_path_that_does_not_exist(store, tmp_path):
    with pytest.raises(SourceError, match="does not exist: .*nowhere"):
        ingest(IngestConfig(source=str(tmp_path / "nowhere")), store, tmp_path)
    assert store.stages() == []


def test_unknown_dataset_is_rejected():
    with pytest.raises(SourceError, match="unknown dataset 'ml-1b'.*ml-latest-small"):
        IngestConfig(dataset="ml-1b")


def test_truncated_zip(store, tmp_path):
    z = _zip_of(SMALL, tmp_path / "ml-latest-small.zip")
    data = z.read_bytes()
    z.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated"):
        ingest(IngestConfig(source=str(z)), store, tmp_path)
    assert store.latest("ingest") is None


def test_zip_source_works_and_validation_logs_no_gx_chatter(store, tmp_path, caplog):
    z = _zip_of(SMALL, tmp_path / "ml-latest-small.zip")
    with caplog.at_level("INFO"):
        art, _ = ingest(IngestConfig(source=str(z)), store, tmp_path / "data")
    assert art.rows["movies.parquet"] == 9742
    gx_lines = [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations")]
    assert not [m for m in gx_lines if "ephemeral docs site" in m], gx_lines


def test_checksum_mismatch(store, tmp_path):
    src = _copy_small(tmp_path)
    with open(src / "ratings.csv", "a") as f:
        f.write("1,1,4.0,964982703\r\n")
    with pytest.raises(SourceError, match="checksum mismatch.*ratings.csv"):
        ingest(IngestConfig(source=str(src)), store, tmp_path)
    assert store.stages() == []


def test_checksum_mismatch_from_converted_line_endings_says_so(store, tmp_path):
    src = _copy_small(tmp_path)
    (src / "movies.csv").write_bytes((src / "movies.csv").read_bytes().replace(b"\r\n", b"\n"))  # dos2unix
    with pytest.raises(SourceError) as err:
        ingest(IngestConfig(source=str(src)), store, tmp_path)
    msg = str(err.value)
    assert "movies.csv" in msg and "line endings" in msg and "CRLF" in msg
    assert "ratings.csv" not in msg
    with open(src / "ratings.csv", "a") as f:  # an edit, not a conversion: no line-ending hint for it
        f.write("1,1,4.0,964982703\r\n")
    with pytest.raises(SourceError) as err:
        ingest(IngestConfig(source=str(src)), store, tmp_path)
    assert str(err.value).count("line endings") == 1 and "ratings.csv: expected sha256" in str(err.value)


def test_csv_with_a_missing_column(store, tmp_path):
    src = _copy_small(tmp_path)
    df = pd.read_csv(src / "movies.csv").drop(columns=["genres"])
    df.to_csv(src / "movies.csv", index=False)
    with pytest.raises(TableFormatError, match="movies.csv: missing column.*genres"):
        ingest(IngestConfig(source=str(src), verify=False), store, tmp_path)
    assert store.stages() == [] or store.versions("ingest") == []


def test_ratings_out_of_range_names_table_expectation_and_rows(small_ingest, tmp_path):
    store, good = small_ingest
    src = _copy_small(tmp_path)
    df = pd.read_csv(src / "ratings.csv")
    df.loc[5, "rating"] = 7.0
    df.loc[9, "rating"] = 3.3
    df.to_csv(src / "ratings.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        ingest(IngestConfig(source=str(src), verify=False), store, tmp_path)
    msg = str(err.value)
    assert "table 'ratings'" in msg and "expect_column_values_to_be_in_set" in msg and "2 bad row(s)" in msg
    assert "'rating': 7.0" in msg and "nothing was published" in msg
    assert store.latest("ingest").version == good.version  # the previous latest stays


def test_ratings_for_unknown_movie_fail_referential_integrity(store, tmp_path):
    src = _copy_small(tmp_path)
    df = pd.read_csv(src / "ratings.csv")
    df.loc[0, "movieId"] = 99999999
    df.to_csv(src / "ratings.csv", index=False)
    with pytest.raises(DataValidationError, match="(?s)table 'ratings'.*movieId.*99999999"):
        ingest(IngestConfig(source=str(src), verify=False), store, tmp_path)


def test_duplicate_ratings_name_the_repeated_pair(store, tmp_path):
    src = _copy_small(tmp_path)
    df = pd.read_csv(src / "ratings.csv")
    pd.concat([df, df.iloc[[7]]]).to_csv(src / "ratings.csv", index=False)
    u, m = df.iloc[7][["userId", "movieId"]].astype(int)
    with pytest.raises(DataValidationError) as err:
        ingest(IngestConfig(source=str(src), verify=False), store, tmp_path)
    msg = str(err.value)
    assert "table 'ratings'" in msg and "(userId, movieId) unique" in msg and "1 bad row(s)" in msg
    assert f"'userId': {u}, 'movieId': {m}" in msg


def test_tags_and_links_for_unknown_movies_fail_referential_integrity(store, tmp_path):
    src = _copy_small(tmp_path)
    tags = pd.read_csv(src / "tags.csv")
    tags.loc[[0, 1], "movieId"] = 77777777
    tags.to_csv(src / "tags.csv", index=False)
    links = pd.read_csv(src / "links.csv", dtype={"imdbId": str})
    links.loc[3, "movieId"] = 88888888
    links.to_csv(src / "links.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        ingest(IngestConfig(source=str(src), verify=False), store, tmp_path)
    msg = str(err.value)
    assert "2 expectation(s) failed" in msg
    assert "table 'tags': expect_no_rows_from_query [movieId in the movies table]: 2 bad row(s)" in msg
    assert "table 'links': expect_no_rows_from_query [movieId in the movies table]: 1 bad row(s)" in msg
    assert "77777777" in msg and "88888888" in msg


def test_interrupted_run_keeps_previous_latest(small_ingest, tmp_path, monkeypatch):
    store, good = small_ingest
    import elm.data.ingest as ingest_mod

    def killed(_tables):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_mod, "validate_tables", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest(IngestConfig(dataset="ml-latest-small", verify=False), store, tmp_path)
    assert store.latest("ingest").version == good.version
    assert [a.version for a in store.versions("ingest")].count(good.version) == 1
    assert not list((store.root / "ingest").glob(".work-*"))


@pytest.fixture
def http_dir(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder (stands in for GroupLens)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_and_ingests(http_dir, store, tmp_path):
    root, url = http_dir
    _zip_of(SMALL, root / "ml-latest-small.zip")
    art, _ = ingest(IngestConfig(source=f"{url}/ml-latest-small.zip"), store, tmp_path / "data")
    assert art.rows["ratings.parquet"] == 100836
    assert (tmp_path / "data/raw/ml-latest-small/ml-latest-small.zip").exists()


def test_download_with_checksum_mismatch_publishes_nothing(http_dir, store, tmp_path):
    root, url = http_dir
    src = _copy_small(tmp_path)
    (src / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,x,1\n")
    _zip_of(src, root / "ml-latest-small.zip")
    with pytest.raises(SourceError, match="checksum mismatch.*tags.csv"):
        ingest(IngestConfig(source=f"{url}/ml-latest-small.zip", verify=False), store, tmp_path / "data")
    assert store.stages() == []


def test_download_of_missing_url_is_a_clear_error(http_dir, store, tmp_path):
    _, url = http_dir
    with pytest.raises(SourceError, match="could not download .*nothing.zip"):
        ingest(IngestConfig(source=f"{url}/nothing.zip"), store, tmp_path / "data")
    assert not list((tmp_path / "data").rglob("*.part"))


def test_a_quote_in_the_source_and_store_paths(tmp_path):
    """Paths reach DuckDB's SQL as quoted literals: a ' in a folder name is just a character."""
    from elm.artifacts import ArtifactStore

    src = _copy_small(tmp_path / "it's")
    store = ArtifactStore(tmp_path / "o'x" / "artifacts")
    art, hit = ingest(IngestConfig(source=str(src)), store, tmp_path / "data")
    assert not hit and art.rows["movies.parquet"] == 9742 and art.rows["ratings.parquet"] == 100836


def _extract_many(zip_path: str, dest: str, rounds: int) -> str:
    from elm.data.sources import DATASETS, extract_zip

    try:
        for _ in range(rounds):
            extract_zip(Path(zip_path), Path(dest), DATASETS["ml-latest-small"])
            assert (Path(dest) / "ratings.csv").stat().st_size == (SMALL / "ratings.csv").stat().st_size
    except Exception as e:  # noqa: BLE001 - reported back to the test
        return f"{type(e).__name__}: {e}"
    return "ok"


def test_concurrent_extractions_of_one_zip_into_one_folder(tmp_path):
    import multiprocessing

    z = _zip_of(SMALL, tmp_path / "ml-latest-small.zip")
    dest = tmp_path / "data" / "raw" / "ml-latest-small" / "from-ml-latest-small"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        results = pool.starmap(_extract_many, [(str(z), str(dest), 3)] * 8)
    assert results == ["ok"] * 8
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no temporary folder left
