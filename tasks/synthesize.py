from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.synthesis import SynthesisConfig, report, synthesize
from elm.teacher_openai import TeacherResponseError, TeacherUnavailableError
from tasks.common import publish_rows, retry_on, store

STAGES = ("ingest", "splits", "semantic", "behavioral")


# Retrying an unreachable endpoint is safe: finished chunks are kept, so a retry resumes where it stopped.
@task(name="synthesize", retries=2, retry_delay_seconds=30,
      retry_condition_fn=retry_on(TeacherUnavailableError, TeacherResponseError))
def synthesize_task(versions: dict[str, str], cfg: SynthesisConfig, artifacts_dir: str | None = None) -> str:
    s = store(artifacts_dir)
    arts = {k: s.resolve(k, versions[k]) for k in STAGES}
    art, hit = synthesize(arts, cfg, s)
    log = get_run_logger()
    log.info("%ssynthesize %s at %s", "cache hit: " if hit else "", art.version, art.path)
    text = report(art)
    log.info("\n%s", text)
    publish_rows(art, hit)
    create_table_artifact(key="synthesize-reference-sc", table=art.summary.get("reference_sc", []),
                          description=f"Reference SC of the {art.summary.get('teacher')} teacher's targets "
                                      "on held-out movies (truth vs random)")
    create_markdown_artifact(key="synthesize-report", markdown="```\n" + text + "\n```",
                             description="synthesize: counts, rejections, reference SC")
    return art.version
