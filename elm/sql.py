"""DuckDB over the artifact store: reporting is SQL.

Views (one per Parquet file of every stage):
    <stage>_<table>        the ``latest`` version, e.g. ``ingest_ratings``, ``embeddings_movies_semantic``
    <stage>_<table>_all    every version, with a ``version`` column
Table:
    manifests              one row per version: stage, version, created_at, is_latest, code_version,
                           inputs/config/summary (JSON), files
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable

import duckdb

from elm.artifacts import ArtifactError, ArtifactStore

log = logging.getLogger(__name__)


def _ident(*parts: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", "_".join(parts))


def sql_literal(s: str) -> str:
    """A string as a DuckDB SQL literal (paths go into SQL this way: table functions and COPY take no
    parameters for them)."""
    return "'" + s.replace("'", "''") + "'"


_lit = sql_literal


def connect(store: ArtifactStore, database: str = ":memory:", stages: Iterable[str] | None = None,
            tables: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
    """The views and the manifests table above; ``stages`` / ``tables`` (e.g. ("evaluate",), ("scores",)) limit
    them to what a query reads."""
    stages = None if stages is None else set(stages)
    tables_wanted = None if tables is None else set(tables)
    con = duckdb.connect(database, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    rows = []
    for stage in store.stages():
        if stages is not None and stage not in stages:
            continue
        # A damaged version (no or an unreadable manifest, missing files) is left out, not a failure of the lot.
        for path, why in store.damaged(stage):
            log.warning("sql: skipping damaged version %s: %s", path, why)
        try:
            latest = store.latest(stage)
        except ArtifactError:
            latest = None
        versions = store.versions(stage)
        tables: dict[str, list[tuple[str, str]]] = {}
        for art in versions:
            m = art.manifest
            rows.append((stage, art.version, m["created_at"], latest is not None and art.version == latest.version,
                         m.get("code_version"), json.dumps(m.get("inputs", {})), json.dumps(m.get("config", {})),
                         json.dumps(m.get("summary", {})), json.dumps(m.get("files", [])), str(art.path)))
            for f in m["files"]:
                if f["name"].endswith(".parquet") and (
                        tables_wanted is None or f["name"].removesuffix(".parquet") in tables_wanted):
                    tables.setdefault(f["name"].removesuffix(".parquet"), []).append((art.version, str(art.path / f["name"])))
        # can_have_nan: pyarrow leaves NaN out of Parquet min/max statistics and DuckDB would trust them,
        # making isnan() filters silently false (duckdb/duckdb#25521); evaluation tables hold NaN.
        for table, files in tables.items():
            union = " UNION ALL BY NAME ".join(
                f"SELECT {_lit(v)} AS version, * FROM read_parquet({_lit(p)}, can_have_nan = true)" for v, p in files
            )
            con.execute(f"CREATE VIEW {_ident(stage, table, 'all')} AS {union}")
            if latest is not None and any(v == latest.version for v, _ in files):
                path = dict(files)[latest.version]
                con.execute(f"CREATE VIEW {_ident(stage, table)} AS "
                            f"SELECT * FROM read_parquet({_lit(path)}, can_have_nan = true)")
    con.execute(
        "CREATE TABLE manifests (stage VARCHAR, version VARCHAR, created_at TIMESTAMPTZ, is_latest BOOLEAN, "
        "code_version VARCHAR, inputs JSON, config JSON, summary JSON, files JSON, path VARCHAR)"
    )
    if rows:
        con.executemany("INSERT INTO manifests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def views(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
