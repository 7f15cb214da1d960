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


def quiet_third_party() -> None:
    """Environment that must be set before numpy/torch/HF load: offline hubs, one BLAS thread for implicit."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns and slows down otherwise
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
