from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.report.stage import build_report, headline_text, report_markdown, report_tables
from tasks.common import store


@task(name="report")
def report_task(versions: dict[str, str], artifacts_dir: str | None = None) -> str:
    """The report of versions["evaluate"], also published as Prefect table and markdown artifacts."""
    s = store(artifacts_dir)
    art, hit = build_report(s.resolve("evaluate", versions["evaluate"]), s)
    text = headline_text(art)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "reported", text)
    tables = report_tables(art)
    create_table_artifact(key="report-headline", table=tables["headline"],
                          description=f"ELM headline figures (report {art.version}, page {art.path / 'report.html'})")
    create_table_artifact(key="report-per-task", table=tables["per_task"],
                          description="SC per task: ELM vs text-only baseline, with random and teacher references")
    # The UI cannot reach the PNGs beside the page: name them instead of showing broken images.
    md = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", lambda m: f"*{m[1]}: `{art.path / m[2]}`*", report_markdown(art))
    create_markdown_artifact(key="report", markdown=md,
                             description=f"The evaluation report; plots and HTML in {art.path}")
    return art.version
