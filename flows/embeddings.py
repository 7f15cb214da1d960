from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from elm.embed.behavioral import WALSConfig
from elm.embed.stage import SemanticConfig, SplitConfig, report
from tasks.common import store
from tasks.embeddings import behavioral_task, semantic_task, splits_task


@flow(name="embeddings", log_prints=True)
def embeddings_flow(
    ingest_version: str,
    splits: SplitConfig = SplitConfig(),
    wals: WALSConfig = WALSConfig(),
    semantic: SemanticConfig = SemanticConfig(),
    artifacts_dir: str | None = None,
) -> dict[str, str]:
    """Splits, behavioral (WALS) and semantic vectors for one ingest artifact; returns stage -> version."""
    versions = {
        "splits": splits_task(ingest_version, splits, artifacts_dir),
        "behavioral": behavioral_task(ingest_version, wals, artifacts_dir),
        "semantic": semantic_task(ingest_version, semantic, artifacts_dir),
    }
    s = store(artifacts_dir)
    text = report({k: s.resolve(k, v) for k, v in versions.items()})
    get_run_logger().info("\n" + text)
    create_markdown_artifact(key="embeddings-report", markdown="```\n" + text + "\n```",
                             description="CF quality and nearest neighbours")
    return versions
