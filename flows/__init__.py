"""Prefect flows: one per stage, and ``elm`` (flows/pipeline.py) chaining them."""

# Before prefect is imported (elm.settings imports nothing heavy): offline, quiet, library logs in flow runs.
from elm.settings import apply_env_defaults

apply_env_defaults(prefect=True)

import logging  # noqa: E402

logging.getLogger("elm").setLevel(logging.INFO)
logging.getLogger("great_expectations").setLevel(logging.WARNING)
