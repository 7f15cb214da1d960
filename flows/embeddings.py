from __future__ import annotations

from dataclasses import asdict, dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from elm.embed.behavioral import WALSConfig
from elm.embed.stage import SemanticConfig, SplitConfig, report
from tasks.common import store
from tasks.embeddings import behavioral_task, semantic_task, splits_task


@dataclass(frozen=True)
class EmbeddingVersions:
    """The embeddings flow's artifact versions. Not a dict: Prefect links each part of a flow's result to the
    run that returned it, by identity, and a dict's keys ("semantic", ...) are interned strings that turn up
    again in later stages' configs (TrainConfig.movie_space), which would draw graph edges from embeddings to
    every one of them."""

    splits: str
    behavioral: str
    semantic: str

    def items(self):
        return asdict(self).items()


@flow(name="embeddings", log_prints=True)
def embeddings_flow(
    ingest_version: str,
    splits: SplitConfig = SplitConfig(),
    wals: WALSConfig = WALSConfig(),
    semantic: SemanticConfig = SemanticConfig(),
    artifacts_dir: str | None = None,
) -> EmbeddingVersions:
    """Splits, behavioral (WALS) and semantic vectors for one ingest artifact; returns their versions."""
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
    return EmbeddingVersions(**versions)
