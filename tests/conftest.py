from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports prefect/HF: a private Prefect home, offline hubs, quiet BLAS.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="elm-test-prefect-"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from elm.artifacts import ArtifactStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_MOVIELENS = Path(os.environ.get("ELM_SHARED_MOVIELENS", REPO.parent / "shared" / "data" / "movielens"))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture(scope="session")
def shared_movielens() -> Path:
    if not (SHARED_MOVIELENS / "ml-latest-small" / "ratings.csv").exists():
        pytest.skip(f"shared MovieLens files not found at {SHARED_MOVIELENS} (set ELM_SHARED_MOVIELENS)")
    return SHARED_MOVIELENS


@pytest.fixture(scope="session")
def small_ingest(tmp_path_factory):
    """ml-latest-small ingested once per session (the embedded copy): (store, artifact)."""
    from elm.ingest import IngestConfig, ingest

    root = tmp_path_factory.mktemp("session-artifacts")
    s = ArtifactStore(root)
    art, _ = ingest(IngestConfig(), s, root / "data")
    return s, art
