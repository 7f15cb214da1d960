"""Where things live on disk, overridable by environment variables (the CLI takes flags too)."""

from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS_ENV = "ELM_ARTIFACTS_DIR"
DATA_ENV = "ELM_DATA_DIR"


def artifacts_dir() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV, "artifacts"))


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV, "data"))


ENV_DEFAULTS = {
    "OPENBLAS_NUM_THREADS": "1",  # implicit warns and slows down with a multithreaded BLAS
    # A hub-name load would otherwise retry the network for a minute; with a network, export them as 0.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""Environment the library wants before numpy, torch and the HF libraries load. A variable already set wins."""

PREFECT_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",  # a temporary server on a busy 2-core machine
    "PREFECT_LOGGING_EXTRA_LOGGERS": "elm",  # the library's log lines show in flow runs
    # The library logs outside flow runs too (CLI, tests): those lines have no run to go to, which is fine.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
"""What the flows add, before prefect is imported: stay offline and quiet."""


def apply_env_defaults(prefect: bool = False) -> None:
    """Set the defaults above where unset. Called once at each process start (the ``elm`` command, the flows
    package, the training script, the tests, the benchmarks), never on import of a library module."""
    for k, v in {**ENV_DEFAULTS, **(PREFECT_ENV_DEFAULTS if prefect else {})}.items():
        os.environ.setdefault(k, v)
