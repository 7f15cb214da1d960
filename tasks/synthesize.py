from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from elm.synth.stage import SYNTHESIZE, SynthesisConfig, report, run_chunk, synthesize
from elm.synth.teachers.base import TransientTeacherError
from elm.lineage import resolve_lineage
from tasks.common import publish_rows, retry_on, rounded, runner_mapper, store, worker_name



@task(name="synthesize-chunk", task_run_name="synthesize-chunk-{item}", retries=2, retry_delay_seconds=30,
      retry_condition_fn=retry_on(TransientTeacherError))
def synthesize_chunk_task(item: int, versions: dict[str, str], cfg: SynthesisConfig, store_root: str,
                          folder: str) -> str:
    """Chunk ``item`` of the plan, wherever the task runner puts it; returns its file."""
    path = run_chunk(item, versions, cfg, store_root, folder)
    get_run_logger().info("synthesize chunk %d written by %s", item, worker_name())
    return path


# Retrying an unreachable endpoint is safe: finished chunks are kept, so a retry resumes where it stopped.
@task(name="synthesize", retries=2, retry_delay_seconds=30,
      retry_condition_fn=retry_on(TransientTeacherError))
def synthesize_task(embeddings: dict[str, str], cfg: SynthesisConfig, artifacts_dir: str | None = None,
                    task_runner: str = "threads", workers: int = 1, dask_address: str | None = None) -> str:
    """Targets for the embeddings' versions (splits, spaces; ingest: the one the splits were made from, unless
    given). The chunks are generated here one after another, or as synthesize-chunk tasks on the task runner
    that task_runner/workers/dask_address name (tasks.runners)."""
    mapper = runner_mapper(synthesize_chunk_task, task_runner, workers, dask_address)
    s = store(artifacts_dir)
    given = {k: s.resolve(k, v) for k, v in embeddings.items() if k in SYNTHESIZE.inputs}
    arts = {**resolve_lineage(given["splits"], ["ingest"], store=s), **given}
    art, hit = synthesize(arts, cfg, s, map_chunks=mapper)
    log = get_run_logger()
    log.info("%ssynthesize %s at %s", "cache hit: " if hit else "", art.version, art.path)
    text = report(art)
    log.info("\n%s", text)
    publish_rows(art, hit)
    create_table_artifact(key="synthesize-reference-sc", table=rounded(art.summary.get("reference_sc", [])),
                          description=f"synthesize {art.version}: reference SC of the {art.summary.get('teacher')} "
                                      "teacher's targets on held-out movies (truth vs random)")
    create_markdown_artifact(key="synthesize-report", markdown="```\n" + text + "\n```",
                             description=f"synthesize {art.version}: counts, rejections, reference SC (text)")
    return art.version
