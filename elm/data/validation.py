"""Great Expectations suites for the ingested tables, run in DuckDB over the Parquet files; a failure raises
with what, where, and example rows.

The tables are validated where they already are: GX's SQL data source over a throw-away DuckDB database
whose views read the Parquet files (``duckdb+buffered://``, elm/data/gx_duckdb.py). Nothing is loaded into
pandas, so 25M ratings validate in seconds. Checks that GX would compute with a join of the whole table
(compound uniqueness, ``movieId`` in movies with a 62k-value set) are SQL queries for ``ExpectNoRowsFromQuery``
that run once each. A compound key is first checked in one streaming pass that proves a file sorted by it
(as MovieLens publishes ratings and the genome) unique; only a file that pass cannot prove is sorted.

GX does not raise on a failed expectation: it returns results. ``validate_tables`` turns the
first failures into one ``DataValidationError`` so the ingest stage publishes nothing.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import duckdb

from elm.sql import sql_literal

log = logging.getLogger(__name__)

HALF_STARS = [x / 2 for x in range(1, 11)]  # 0.5 .. 5.0
KEYS = {"ratings": ["userId", "movieId"], "movies": ["movieId"], "tags": ["userId", "movieId"],
        "links": ["movieId"], "genome_scores": ["movieId", "tagId"], "genome_tags": ["tagId"]}
"""Columns that identify a row in a table's failure examples."""


class DataValidationError(ValueError):
    """One or more expectations failed; the message names table, expectation and example rows."""


NO_ROWS = "expect_no_rows_from_query"
"""How failures of ExpectNoRowsFromQuery and its ...UnlessProven variant are named (the same check)."""
IN_FILE_ORDER = "__in_file_order"
"""Suffix of the view of a table that adds each row's position in its Parquet file (``file_row_number``)."""


def _duplicates(table: str, columns: list[str]):
    """(columns) unique. MovieLens publishes its files sorted by their key (ratings by user, then movie), so
    the check first proves it in one streaming pass: each row's key is greater than the previous row's, in
    file order. File order is not taken on trust: each row's previous row must be the one before it in the
    file (``file_row_number``), so a scan that ever delivered rows out of order only sends the check to the
    sort below, never to a wrong pass. Unsorted files and files with repeats take the sort."""
    from elm.data.gx_rows import BAD_ROWS, ExpectNoRowsFromQueryUnlessProven

    cols = ", ".join(f'"{c}"' for c in columns)
    # Sort and compare neighbours: on 25M rows half the time of GROUP BY ... HAVING count(*) > 1 here.
    prev = ", ".join(f'lag("{c}") OVER w AS "_prev_{c}"' for c in columns)
    same = " AND ".join(f'"{c}" = "_prev_{c}"' for c in columns)
    # A window with an empty OVER () keeps the scan's order and streams (DuckDB's documented order preservation).
    prev_in_file = ", ".join(f'lag("{c}") OVER () AS "_prev_{c}"' for c in columns)
    follows = "file_row_number = _prev_row + 1 AND " + _greater(columns)
    return ExpectNoRowsFromQueryUnlessProven(
        proof_query=f"SELECT {cols}, file_row_number FROM (SELECT {cols}, file_row_number, {prev_in_file}, "
                    f'lag(file_row_number) OVER () AS _prev_row FROM "{table}{IN_FILE_ORDER}") '
                    f"WHERE NOT coalesce({follows}, _prev_row IS NULL AND file_row_number = 0) LIMIT 1",
        unexpected_rows_query=f"SELECT {cols}, count(*) OVER () AS {BAD_ROWS} FROM "
                              f"(SELECT {cols}, {prev} FROM {{batch}} WINDOW w AS (ORDER BY {cols})) WHERE {same}",
        description=f"({', '.join(columns)}) unique (rows repeating another)",
    )


def _greater(columns: list[str]) -> str:
    """SQL: the row's ``columns`` are greater than the previous row's (``_prev_<column>``), in lexicographic
    order; NULL where a value is NULL."""
    c, *rest = columns
    if not rest:
        return f'"{c}" > "_prev_{c}"'
    return f'("{c}" > "_prev_{c}" OR "{c}" = "_prev_{c}" AND {_greater(rest)})'


def _known_movies():
    from elm.data.gx_rows import BAD_ROWS, ExpectNoRowsFromQuery

    return ExpectNoRowsFromQuery(
        unexpected_rows_query=f'SELECT b.*, count(*) OVER () AS {BAD_ROWS} FROM {{batch}} AS b '
                              f'ANTI JOIN movies AS m ON b."movieId" = m."movieId" WHERE b."movieId" IS NOT NULL',
        description="movieId in the movies table",
    )


def suites(tables: list[str]) -> dict[str, list]:
    """Expectations per table. ``movieId`` of the other tables must be in the movies table."""
    import great_expectations as gx

    E = gx.expectations
    out: dict[str, list] = {
        "ratings": [
            E.ExpectTableColumnsToMatchSet(column_set=["userId", "movieId", "rating", "timestamp"], exact_match=True),
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("userId", "movieId", "rating", "timestamp")],
            E.ExpectColumnValuesToBeInSet(column="rating", value_set=HALF_STARS),
            _duplicates("ratings", ["userId", "movieId"]),
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ],
        "movies": [
            E.ExpectTableColumnsToMatchSet(column_set=["movieId", "title", "name", "year", "genres"], exact_match=True),
            E.ExpectColumnValuesToNotBeNull(column="movieId"),
            E.ExpectColumnValuesToBeUnique(column="movieId"),
            E.ExpectColumnValuesToNotBeNull(column="title"),
            E.ExpectColumnValuesToBeBetween(column="year", min_value=1870, max_value=2100),
            E.ExpectTableRowCountToBeBetween(min_value=1),
        ],
        "tags": [
            E.ExpectTableColumnsToMatchSet(column_set=["userId", "movieId", "tag", "timestamp"], exact_match=True),
            E.ExpectColumnValuesToNotBeNull(column="userId"),
            E.ExpectColumnValuesToNotBeNull(column="movieId"),
        ],
        "links": [
            E.ExpectTableColumnsToMatchSet(column_set=["movieId", "imdbId", "tmdbId"], exact_match=True),
            E.ExpectColumnValuesToBeUnique(column="movieId"),
        ],
        "genome_scores": [
            E.ExpectColumnValuesToBeBetween(column="relevance", min_value=0.0, max_value=1.0),
            _duplicates("genome_scores", ["movieId", "tagId"]),
        ],
        "genome_tags": [
            E.ExpectColumnValuesToBeUnique(column="tagId"),
            E.ExpectColumnValuesToNotBeNull(column="tag"),
        ],
    }
    if "movies" in tables:
        for t in ("ratings", "tags", "links", "genome_scores"):
            out[t].append(_known_movies())
    return {t: s for t, s in out.items() if t in tables}


@dataclass(frozen=True)
class Failure:
    table: str
    expectation: str
    kwargs: dict
    unexpected_count: int | None
    examples: list[dict]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items())
        what = f"{self.expectation}({args})" if self.kwargs else self.expectation
        count = f"{self.unexpected_count} bad row(s)" if self.unexpected_count is not None else "failed"
        ex = "; ".join(str(r) for r in self.examples[:5])
        return f"table {self.table!r}: {what}: {count}" + (f"; e.g. {ex}" if ex else "")


def _short(v) -> str:
    if isinstance(v, (list, tuple, set)) and len(v) > 6:
        return f"[{len(v)} values]"
    return repr(v)


def validate_tables(paths: dict[str, Path], *, max_failures: int = 10) -> dict[str, int]:
    """Run every table's suite on its Parquet file; raise ``DataValidationError`` if anything fails.
    Returns the number of expectations per table."""
    from elm.data import gx_duckdb

    with tempfile.TemporaryDirectory(prefix="elm-validate-") as tmp:
        db = Path(tmp) / "tables.duckdb"
        with duckdb.connect(str(db)) as con:
            for table, path in paths.items():
                con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet({sql_literal(str(path))})')
                con.execute(f'CREATE VIEW "{table}{IN_FILE_ORDER}" AS '
                            f'SELECT * FROM read_parquet({sql_literal(str(path))}, file_row_number = true)')
        with warnings.catch_warnings():
            # GX reflects each table's column types; duckdb_engine's Postgres-based reflection does not know
            # DuckDB's list type (movies.genres), which no expectation looks at.
            warnings.filterwarnings("ignore", message="Did not recognize type 'list'", module="duckdb_engine")
            return _validate(f"{gx_duckdb.URL_SCHEME}:///{db}", list(paths), max_failures)


def _validate(url: str, tables: list[str], max_failures: int) -> dict[str, int]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from elm.data import gx_duckdb

    gx_duckdb.register()
    # This GX module sets its own logger to INFO when imported, so the WARNING level elm/logs.py gives
    # "great_expectations" does not reach its "Created temporary directory ... for ephemeral docs site".
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_sql("movielens", connection_string=url)
    failures: list[Failure] = []
    counts: dict[str, int] = {}
    try:
        for table, expectations in suites(tables).items():
            batch = source.add_table_asset(table, table_name=table).add_batch_definition_whole_table(table).get_batch()
            suite = ctx.suites.add(gx.ExpectationSuite(name=table, expectations=expectations))
            result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5,
                                                          "unexpected_index_column_names": KEYS[table]})
            counts[table] = len(result.results)
            failures += [_failure(table, r) for r in result.results if not r.success]
            log.info("validated %s: %d expectations, %d failed", table, len(result.results),
                     sum(not r.success for r in result.results))
    finally:
        # Close DuckDB before its folder is removed: the data source tests its connection with an engine of
        # its own, the validation runs on the execution engine's.
        source.get_engine().dispose()
        source.get_execution_engine().engine.dispose()
    if failures:
        lines = "\n  ".join(str(f) for f in failures[:max_failures])
        raise DataValidationError(f"{len(failures)} expectation(s) failed; nothing was published:\n  {lines}")
    return counts


def _failure(table: str, r) -> Failure:
    res = r.result or {}
    cfg = r.expectation_config
    if cfg.type.startswith(NO_ROWS):  # the queries are long; the description says what they check
        return Failure(table, f"{NO_ROWS} [{cfg.description}]", {}, res.get("observed_value"),
                       (res.get("details") or {}).get("unexpected_rows", []))
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    rows = res.get("partial_unexpected_index_list") or [{"value": v} for v in res.get("partial_unexpected_list", [])]
    if not rows and "observed_value" in res:
        rows = [{"observed": res["observed_value"]}]
    if error := _exception(r.exception_info):
        rows = [{"error": error}]
    return Failure(table, cfg.type, kwargs, res.get("unexpected_count"), list(rows)[:5])


def _exception(info) -> str | None:
    """The first raised exception's message: SQL results nest exception info per metric."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    return next((_exception(v) for v in info.values() if isinstance(v, dict) and _exception(v)), None)
