import subprocess
import sys

import pytest

from tests.conftest import REPO


def _elm(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "elm.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_help_explains_commands():
    out = _elm("--help").stdout
    assert "ingest" in out and "sql" in out and "artifacts" in out
    out = _elm("ingest", "--help").stdout
    assert "--dataset" in out and "--source" in out and "ELM_MOVIELENS_DIR" in out


def test_cli_ingest_then_cache_hit_then_sql(tmp_path):
    art = str(tmp_path / "a")
    first = _elm("ingest", "--artifacts", art)
    assert first.returncode == 0, first.stderr
    assert "ratings 100836" in first.stdout and "movies 9742" in first.stdout and "tags 3683" in first.stdout
    second = _elm("ingest", "--artifacts", art)
    assert second.stdout.startswith("cache hit")
    q = _elm("sql", "select count(*) as n from ingest_tags", "--artifacts", art)
    assert q.returncode == 0 and "3683" in q.stdout
    listing = _elm("artifacts", "--artifacts", art)
    assert listing.stdout.startswith("* ingest")


def test_cli_bad_source_is_one_clear_line(tmp_path):
    r = _elm("ingest", "--source", str(tmp_path / "missing"), "--artifacts", str(tmp_path / "a"))
    assert r.returncode == 1
    assert "SourceError" in r.stderr and "does not exist" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.mark.slow
def test_elm_flow_runs_ingest_through_prefect(prefect_harness, tmp_path):
    from flows.pipeline import elm_flow

    versions = elm_flow(artifacts_dir=str(tmp_path / "a"), data_dir=str(tmp_path / "d"))
    from elm.artifacts import ArtifactStore

    art = ArtifactStore(tmp_path / "a").resolve("ingest", versions["ingest"])
    assert art.rows["ratings.parquet"] == 100836
    # second run: same version, no new folder
    assert elm_flow(artifacts_dir=str(tmp_path / "a"), data_dir=str(tmp_path / "d")) == versions
    assert len(ArtifactStore(tmp_path / "a").versions("ingest")) == 1


def test_library_has_no_prefect_imports():
    offenders = [p.name for p in (REPO / "elm").rglob("*.py") if "prefect" in p.read_text()]
    assert offenders == []
