from __future__ import annotations

import os
import tempfile
from pathlib import Path

from elm.settings import apply_env_defaults

# Before anything imports prefect/HF: a private Prefect home, offline hubs, quiet BLAS.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="elm-test-prefect-"))
apply_env_defaults(prefect=True)

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
    from elm.data.ingest import IngestConfig, ingest

    root = tmp_path_factory.mktemp("session-artifacts")
    s = ArtifactStore(root)
    art, _ = ingest(IngestConfig(), s, root / "data")
    return s, art


@pytest.fixture(scope="session")
def small_embeddings(small_ingest):
    """Splits, a fast WALS fit and semantic vectors of ml-latest-small, once per session:
    (store, ingest artifact, {"splits"|"behavioral"|"semantic": artifact})."""
    from elm.embed.behavioral import WALSConfig
    from elm.embed.stage import EmbeddingsConfig, run_embeddings

    store, ingest_art = small_ingest
    fast = EmbeddingsConfig(wals=WALSConfig(factors=32, iterations=8))
    arts = run_embeddings(ingest_art, fast, store)
    return store, ingest_art, {k: a for k, (a, _) in arts.items()}


@pytest.fixture(scope="session")
def model_store(tmp_path_factory) -> ArtifactStore:
    """A store holding the embedded SmolLM2 converted to safetensors (about 25 s, once per session)."""
    from elm.model.base_lm import packaged_model

    s = ArtifactStore(tmp_path_factory.mktemp("model-artifacts"))
    packaged_model(s)
    return s


@pytest.fixture(scope="session")
def smollm_dir(model_store) -> Path:
    """The real SmolLM2-135M-Instruct as a transformers folder."""
    from elm.model.base_lm import DEFAULT_BASE_MODEL, resolve_model_path

    return Path(resolve_model_path(DEFAULT_BASE_MODEL, model_store))


TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16)
"""Overrides that shrink SmolLM2 to a 2-layer, 64-wide Llama for fast unit tests (same tokenizer)."""


@pytest.fixture(scope="session")
def tiny_lm_dir(model_store, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template (seed 0)."""
    from elm.model.base_lm import DEFAULT_BASE_MODEL, random_model_like

    return random_model_like(DEFAULT_BASE_MODEL, tmp_path_factory.mktemp("tiny-lm"), store=model_store, **TINY_LLAMA)


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database for the session's flow runs (10-14 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def tiny_elm(small_embeddings, tiny_lm_dir, tmp_path_factory):
    """(store, folder): a random tiny ELM reading the shared fixtures' semantic and behavioral movie spaces and the
    behavioral user space, saved with its base (about 1 MB)."""
    import torch

    from elm.model.config import ELMConfig, SpaceSpec
    from elm.model.elm import ELM

    store, _, arts = small_embeddings
    sem, beh = arts["semantic"], arts["behavioral"]
    spaces = (SpaceSpec("semantic_movies", "movie", sem.summary["dim"], f"semantic/{sem.version}"),
              SpaceSpec("behavioral_movies", "movie", beh.summary["dim"], f"behavioral/{beh.version}"),
              SpaceSpec("behavioral_users", "user", beh.summary["dim"], f"behavioral/{beh.version}"))
    torch.manual_seed(0)
    elm = ELM.from_base(ELMConfig(spaces=spaces, base_model=str(tiny_lm_dir)))
    return store, elm.save(tmp_path_factory.mktemp("tiny-elm") / "elm", include_base=True)


EXPLORE_GENERATION = dict(max_new_tokens=8, no_repeat_ngram_size=1, repetition_penalty=1.3, dtype="float32")
"""A random LM repeats itself; banning every repeat makes its greedy text depend on the vector fed in."""


@pytest.fixture(scope="session")
def explore_server(tiny_elm):
    """(base URL, Explorer): `elm explore`'s app over the tiny ELM, served by uvicorn on a free 127.0.0.1 port."""
    from elm.explore.app import Explorer, create_app
    from tests.uvicorn_thread import serving

    store, folder = tiny_elm
    gen = dict(EXPLORE_GENERATION)
    explorer = Explorer(store, folder, dtype=gen.pop("dtype"), generation=gen)
    with serving(create_app(explorer)) as url:
        yield url, explorer
