"""The (userId, movieId) and (movieId, tagId) uniqueness checks: one streaming pass proves a file sorted by
its key unique; anything else takes the sort, which names the repeated rows."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from elm.data.validation import IN_FILE_ORDER, DataValidationError, _duplicates, validate_tables

SORT = "WINDOW w AS (ORDER BY"  # only the full check sorts
PROOF = IN_FILE_ORDER  # only the streaming pass reads the file-order view

TABLES = {
    "ratings": (["userId", "movieId"], lambda n: {"rating": np.full(n, 4.0, np.float32),
                                                   "timestamp": np.arange(n, dtype=np.int64)}),
    "genome_scores": (["movieId", "tagId"], lambda n: {"relevance": np.full(n, 0.5, np.float32)}),
}


@pytest.fixture
def statements():
    """Every SQL statement run while validating (the real queries DuckDB receives)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def _write(tmp_path, table: str, keys: np.ndarray, row_group_size: int = 10_000):
    """``keys``: (n, 2) int array, written in this order with the table's other columns."""
    cols, others = TABLES[table]
    data = {cols[0]: keys[:, 0].astype(np.int32), cols[1]: keys[:, 1].astype(np.int32), **others(len(keys))}
    path = tmp_path / f"{table}.parquet"
    pq.write_table(pa.table(data), path, row_group_size=row_group_size)
    return {table: path}


def _sorted_keys(n_first: int = 500, n_second: int = 300) -> np.ndarray:
    """Every pair of a grid, by first then second column: 150k rows, 15 row groups as written."""
    a, b = np.meshgrid(np.arange(1, n_first + 1), np.arange(1, n_second + 1), indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


@pytest.mark.parametrize("table", TABLES)
def test_sorted_file_is_proven_unique_without_the_sort(tmp_path, statements, table):
    assert validate_tables(_write(tmp_path, table, _sorted_keys()))[table] >= 2
    assert any(PROOF in s for s in statements)
    assert not any(SORT in s for s in statements)


def test_unsorted_file_with_unique_pairs_passes_through_the_sort(tmp_path, statements):
    keys = np.random.default_rng(0).permutation(_sorted_keys())
    validate_tables(_write(tmp_path, "ratings", keys))
    assert any(PROOF in s for s in statements) and any(SORT in s for s in statements)


def _fails_naming(paths, table: str, cols: list[str], count: int, repeated: tuple[int, int]) -> None:
    with pytest.raises(DataValidationError) as err:
        validate_tables(paths)
    msg = str(err.value)
    assert f"table {table!r}: expect_no_rows_from_query [({', '.join(cols)}) unique" in msg
    assert f"{count} bad row(s)" in msg
    assert f"'{cols[0]}': {repeated[0]}, '{cols[1]}': {repeated[1]}" in msg


@pytest.mark.parametrize("table", TABLES)
def test_adjacent_repeat_in_a_sorted_file_fails_with_the_row(tmp_path, table):
    keys = _sorted_keys()
    keys = np.insert(keys, 77_777, keys[77_777], axis=0)  # sorted still, but not strictly: the pass fails
    _fails_naming(_write(tmp_path, table, keys), table, TABLES[table][0], 1, tuple(keys[77_777]))


def test_repeats_in_an_unsorted_file_fail_with_the_rows(tmp_path):
    keys = np.random.default_rng(1).permutation(_sorted_keys())
    keys = np.concatenate([keys, keys[[5, 5, 9]]])  # three rows repeat another
    _fails_naming(_write(tmp_path, "ratings", keys), "ratings", ["userId", "movieId"], 3, tuple(keys[5]))


@pytest.mark.parametrize("rows, proven", [
    ([(1, 1, 0), (1, 2, 1), (2, 1, 2)], True),
    ([(1, 1, 0), (1, 2, 2), (2, 1, 1)], False),  # keys increase, but not in file order
    ([(1, 2, 1), (2, 1, 2)], False),  # the scan did not start at the file's first row
    ([(1, 1, 0), (1, 1, 1)], False),
    ([(1, 1, 0), (None, 2, 1)], False),
])
def test_the_pass_proves_nothing_unless_rows_come_in_file_order(rows, proven):
    """The streaming pass, on rows whose file positions are given: it proves uniqueness (returns no rows)
    only when every row follows the one before it in the file and has a greater key."""
    con = duckdb.connect()
    con.execute(f'CREATE TABLE "t{IN_FILE_ORDER}" ("userId" INTEGER, "movieId" INTEGER, file_row_number BIGINT)')
    con.executemany(f'INSERT INTO "t{IN_FILE_ORDER}" VALUES (?, ?, ?)', rows)
    found = con.execute(_duplicates("t", ["userId", "movieId"]).proof_query).fetchall()
    assert (found == []) is proven
