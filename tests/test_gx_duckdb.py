"""The duckdb+buffered SQLAlchemy dialect that lets Great Expectations validate in DuckDB."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from elm.data import gx_duckdb


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS x FROM range(10)")
    gx_duckdb.register()
    return path


def _fetch_after_close(url: str, sql: str, fetch=lambda r: r.fetchall()):
    """What GX does: execute, close the connection, then read the result."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            result = con.execute(sa.text(sql))
        return fetch(result)
    finally:
        engine.dispose()


def test_rows_survive_the_connection_close(db):
    assert _fetch_after_close(f"duckdb+buffered:///{db}", "SELECT count(*) FROM t") == [(10,)]
    # Why the dialect exists: duckdb_engine's ROLLBACK on close discards the pending result. If this starts
    # returning the row, duckdb_engine fixed it and elm/data/gx_duckdb.py can go.
    assert _fetch_after_close(f"duckdb:///{db}", "SELECT count(*) FROM t") == []


def test_reading_past_a_truncated_buffer_raises(db, monkeypatch):
    monkeypatch.setattr(gx_duckdb, "MAX_ROWS", 3)
    url = f"duckdb+buffered:///{db}"
    assert [r.x for r in _fetch_after_close(url, "SELECT x FROM t ORDER BY x", lambda r: r.fetchmany(2))] == [0, 1]
    assert len(_fetch_after_close(url, "SELECT x FROM t WHERE x < 3")) == 3  # exactly the cap: complete
    with pytest.raises(RuntimeError, match="more than 3 rows"):
        _fetch_after_close(url, "SELECT x FROM t")


def test_validation_exits_without_duckdb_leak_reports(tmp_path):
    """duckdb_engine and GX in one process made nanobind print ~100 "leaked instance" lines at every exit, and
    more for each DuckDB connection still open then (a later stage's, here ``keep``)."""
    pd.DataFrame({"movieId": [1, 2], "title": ["A (1999)", "B (2000)"], "name": ["A", "B"], "year": [1999, 2000],
                  "genres": [["Drama"], []]}).to_parquet(tmp_path / "movies.parquet")
    code = ("import sys, duckdb; from pathlib import Path; from elm.data.validation import validate_tables; "
            "print(validate_tables({'movies': Path(sys.argv[1])})); keep = duckdb.connect(); keep.sql('SELECT 1'); "
            "duckdb.sql('SELECT 2').fetchall()")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "movies.parquet")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "{'movies': 6}" in out.stdout
    assert "leaked" not in out.stderr, out.stderr[-2000:]
