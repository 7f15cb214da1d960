"""The ``elm`` run's own page: log lines for each stage's start and result, and the summary artifacts.

A user lands on the parent run (``elm/full``, ``elm/reevaluate``), not on its six subflow runs: so the parent
logs what each stage did and publishes the headline, the stage table and the report page itself.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.report.summary import StageRun, run_summary
from tasks.common import store


class Story:
    """Runs stages for the parent flow and remembers what each produced."""

    def __init__(self, artifacts_dir: str | None):
        self.artifacts_dir = artifacts_dir
        self.stages: list[StageRun] = []
        self.note: str | None = None

    def run(self, name: str, stage_fn: Callable[..., Any], *args, **kw) -> Any:
        """Call a stage subflow (or task); its result is a version, or stage -> version for a group."""
        log = get_run_logger()
        log.info("%s: started", name)
        started = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        t0 = time.monotonic()
        result = stage_fn(*args, **kw)
        seconds = time.monotonic() - t0
        s = store(self.artifacts_dir)
        for stage, version in (result.items() if hasattr(result, "items") else [(name, result)]):
            art = s.resolve(stage, version)
            # created_at has second resolution: an artifact made since the stage began was built by it
            built = _dt.datetime.fromisoformat(art.manifest["created_at"]) >= started
            self.stages.append(StageRun(stage, art.version, built, seconds, art.path))
            log.info(self.stages[-1].line())
        return result

    def say(self, line: str) -> None:
        """One line on the run's log and atop its summary."""
        self.note = line
        get_run_logger().info(line)

    def publish(self, report_version: str) -> None:
        report = store(self.artifacts_dir).resolve("report", report_version)
        create_markdown_artifact(
            key="elm-summary", markdown=run_summary(self.stages, report, self.note),
            description="elm run: headline, stage versions (built or cache hit, seconds) and the report page")
        create_table_artifact(
            key="elm-stages", table=[s.record() for s in self.stages],
            description="elm run: each stage's artifact version, built or cache hit, seconds, where it is")
        get_run_logger().info("report page: %s", report.path / "report.html")
