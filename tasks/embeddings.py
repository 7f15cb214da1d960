from __future__ import annotations

from prefect import get_run_logger, task

from elm.embed.behavioral import WALSConfig
from elm.embed.stage import SemanticConfig, SplitConfig, build_behavioral, build_semantic, build_splits
from tasks.common import publish_rows, store


def _run(builder, name: str, ingest_version: str, cfg, artifacts_dir: str | None) -> str:
    s = store(artifacts_dir)
    art, hit = builder(s.resolve("ingest", ingest_version), cfg, s)
    get_run_logger().info("%s%s %s at %s", "cache hit: " if hit else "", name, art.version, art.path)
    publish_rows(art, hit)
    return art.version


@task(name="splits")
def splits_task(ingest_version: str, cfg: SplitConfig, artifacts_dir: str | None = None) -> str:
    return _run(build_splits, "splits", ingest_version, cfg, artifacts_dir)


@task(name="behavioral")
def behavioral_task(ingest_version: str, cfg: WALSConfig, artifacts_dir: str | None = None) -> str:
    return _run(build_behavioral, "behavioral", ingest_version, cfg, artifacts_dir)


@task(name="semantic")
def semantic_task(ingest_version: str, cfg: SemanticConfig, artifacts_dir: str | None = None) -> str:
    return _run(build_semantic, "semantic", ingest_version, cfg, artifacts_dir)
