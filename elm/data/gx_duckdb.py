"""DuckDB as a Great Expectations SQL data source: the ``duckdb+buffered://`` SQLAlchemy dialect.

GX runs each metric query as ``with engine.connect() as c: result = c.execute(q)`` and fetches the rows
after the connection is closed. Drivers that buffer rows client-side (psycopg2) are fine with that; DuckDB
is not: closing the connection runs ROLLBACK on the same DuckDB connection, which discards the pending
result, and GX reads zero rows ("list index out of range"). This dialect is duckdb_engine's with one change:
a statement's rows are fetched right after it runs (as SQLAlchemy's mssql dialect does for RETURNING), so
they survive the close.

GX's queries return a handful of rows (aggregates, LIMITed examples, at most 200 rows of an unexpected-rows
query), so at most ``MAX_ROWS`` are buffered; reading past a truncated buffer raises rather than returning
a silently short result.
"""

from __future__ import annotations

import atexit
import gc
import sys

from duckdb_engine import Dialect as _DuckDBDialect
from sqlalchemy.dialects import registry
from sqlalchemy.engine import cursor as _cursor

URL_SCHEME = "duckdb+buffered"
MAX_ROWS = 10_000


class _CappedBuffer(_cursor.FullyBufferedCursorFetchStrategy):
    __slots__ = ("_truncated",)

    def __init__(self, dbapi_cursor) -> None:
        rows = dbapi_cursor.fetchmany(MAX_ROWS + 1)
        self._truncated = len(rows) > MAX_ROWS
        # Type codes as text: results GX keeps would otherwise hold DuckDB type objects (see _unhook_try_cast).
        description = [(d[0], str(d[1]), *d[2:]) for d in dbapi_cursor.description]
        super().__init__(dbapi_cursor, description, rows[:MAX_ROWS])

    def _check(self, wanted: int | None) -> None:
        if self._truncated and (wanted is None or wanted > len(self._rowbuffer)):
            raise RuntimeError(f"{URL_SCHEME}: a result of more than {MAX_ROWS} rows was read past its first "
                               f"{MAX_ROWS}; add a LIMIT to the query")

    def fetchone(self, result, dbapi_cursor, hard_close: bool = False):
        self._check(1)
        return super().fetchone(result, dbapi_cursor, hard_close)

    def fetchmany(self, result, dbapi_cursor, size: int | None = None):
        self._check(size)
        return super().fetchmany(result, dbapi_cursor, size)

    def fetchall(self, result, dbapi_cursor):
        self._check(None)
        return super().fetchall(result, dbapi_cursor)


class _BufferedContext(_DuckDBDialect.execution_ctx_cls):
    def post_exec(self) -> None:
        super().post_exec()
        if self.cursor.description is not None:
            self.cursor_fetch_strategy = _CappedBuffer(self.cursor)


class BufferedDuckDBDialect(_DuckDBDialect):
    driver = "buffered"
    supports_statement_cache = False  # as duckdb_engine: its compiled SQL is not cacheable
    execution_ctx_cls = _BufferedContext


def register() -> None:
    """Make ``duckdb+buffered:///<file>`` resolvable by ``sqlalchemy.create_engine`` (idempotent)."""
    registry.register(URL_SCHEME.replace("+", "."), __name__, BufferedDuckDBDialect.__name__)
    atexit.unregister(_unhook_try_cast)
    atexit.register(_unhook_try_cast)


def _unhook_try_cast() -> None:
    """duckdb_engine registers its TRY_CAST compiler on SQLAlchemy's own ``TryCast`` class: that core class
    then holds duckdb_engine's module, which holds ``duckdb``, until the very end of interpreter teardown
    (later than usual with GX imported), and nanobind reports every DuckDB object still alive then as a
    leak: ~100 lines at each exit. Dropping the hook when the program ends lets DuckDB go with its modules."""
    from sqlalchemy import TryCast

    dispatcher = TryCast.__dict__.get("_compiler_dispatcher")
    if dispatcher is not None:
        dispatcher.specs.pop("duckdb", None)
    # Other holders of duckdb_engine's classes remain (SQLAlchemy's type registries, a test runner's
    # references): DuckDB's type constants then still outlive the check. Nothing needs them after atexit.
    for name in [m for m in sys.modules if m.split(".")[0] in ("duckdb", "_duckdb")]:
        module = sys.modules.get(name)
        for key, value in list(vars(module).items()) if module is not None else ():
            if type(value).__name__ == "DuckDBPyType":
                delattr(module, key)
    gc.collect()
