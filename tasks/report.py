from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.report.stage import build_report, headline_text, report_tables
from elm.report.summary import page_for_ui
from tasks.common import store


@task(name="report")
def report_task(evaluate_version: str, artifacts_dir: str | None = None) -> str:
    """The report of an evaluate artifact, also published as Prefect table and markdown artifacts."""
    s = store(artifacts_dir)
    art, hit = build_report(s.resolve("evaluate", evaluate_version), s)
    text = headline_text(art)
    get_run_logger().info("%s\n%s", "cache hit" if hit else "reported", text)
    tables = report_tables(art)
    create_table_artifact(key="report-headline", table=tables["headline"],
                          description=f"report {art.version}: headline figures, normalised first (0 = random, "
                                      f"1 = teacher); page {art.path / 'report.html'}")
    create_table_artifact(key="report-per-task", table=tables["per_task"],
                          description=f"report {art.version}: SC per task and split, ELM vs text-only baseline, "
                                      "normalised first, with the random and teacher references")
    if "history" in tables:
        create_table_artifact(key="report-history", table=tables["history"],
                              description=f"report {art.version}: the headline numbers of every evaluation in the "
                                          "store up to this one, oldest first")
    create_markdown_artifact(key="report", markdown=page_for_ui(art),
                             description=f"report {art.version}: the evaluation report page; plots and HTML in "
                                         f"{art.path}")
    return art.version
