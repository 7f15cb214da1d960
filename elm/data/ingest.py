"""The ingest stage: a MovieLens release -> validated Parquet tables in a versioned artifact."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from elm.artifacts import Artifact, ArtifactStore, WorkDir
from elm.data.sources import DATASETS, get_spec, resolve_source
from elm.data.tables import convert
from elm.data.validation import validate_tables
from elm.lineage import StageSpec, read_tables
from elm.sql import sql_literal

log = logging.getLogger(__name__)

GENOME = ("genome_scores", "genome_tags")
"""The tag genome: in ml-25m (and ml-20m), not in the small releases."""

INGEST = StageSpec("ingest", inputs=(), code_version="1",
                   files=("ratings.parquet", "movies.parquet", "tags.parquet", "links.parquet",
                          "genome_scores.parquet", "genome_tags.parquet"))
"""Its inputs are the release's files, by checksum (no other artifact)."""


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest. The source location is not part of the version: the files' checksums are."""

    dataset: str = "ml-latest-small"
    """One of ml-latest-small (embedded default), ml-25m, ml-100k."""
    source: str | None = None
    """A folder, a .zip or a URL. None: $ELM_MOVIELENS_DIR/<dataset>, the embedded copy, or GroupLens."""
    verify: bool = True
    """Check files against the official sha256 (downloads are always checked)."""

    def __post_init__(self) -> None:
        get_spec(self.dataset)  # raises with the list of known datasets

    def version_config(self) -> dict:
        return {"dataset": self.dataset, "verify": self.verify}


def ingest(config: IngestConfig, store: ArtifactStore, data_dir: Path = Path("data")) -> tuple[Artifact, bool]:
    """Return (artifact, cache_hit). Publishes nothing unless every table passes validation."""
    src = resolve_source(config.dataset, config.source, data_dir=data_dir, verify=config.verify)
    spec = DATASETS[config.dataset]

    def build(work: WorkDir) -> None:
        paths = convert(src.folder, spec.layout, work.path)
        checks = validate_tables(paths)
        with duckdb.connect() as con:
            users, rated = con.execute('SELECT count(DISTINCT "userId"), count(DISTINCT "movieId") FROM '
                                       f'read_parquet({sql_literal(str(paths["ratings"]))})').fetchone()
        work.summary.update(
            dataset=config.dataset,
            origin=src.origin,
            rows={name: pq.ParquetFile(p).metadata.num_rows for name, p in paths.items()},
            users=int(users),
            rated_movies=int(rated),
            expectations=checks,
        )

    inputs = {f"{config.dataset}/{name}": sha for name, sha in sorted(src.checksums.items())}
    return store.produce(INGEST.name, inputs=inputs, config=config.version_config(), code_version=INGEST.code_version,
                         build=build)


def read_ingest_tables(art: Artifact, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Tables of an ingest artifact, checked against its manifest first; the genome tables may be absent."""
    return read_tables(art, names, optional=GENOME)
