"""Prefect flows: one per stage, and ``elm`` (flows/pipeline.py) chaining them."""

import os

# Before prefect is imported: stay offline and quiet, and show the library's logs in flow runs.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "elm")
# The library logs outside flow runs too (CLI, tests): those lines have no run to go to, which is fine.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

from elm.settings import quiet_third_party  # noqa: E402

quiet_third_party()

import logging  # noqa: E402

logging.getLogger("elm").setLevel(logging.INFO)
logging.getLogger("great_expectations").setLevel(logging.WARNING)
