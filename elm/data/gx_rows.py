"""A Great Expectations expectation for SQL data sources: no rows come back from a query, which runs once."""

from __future__ import annotations

from typing import ClassVar

from great_expectations.expectations import UnexpectedRowsExpectation

BAD_ROWS = "_bad_rows"
"""The column of the query that holds the number of bad rows: ``count(*) OVER () AS _bad_rows``."""


class ExpectNoRowsFromQuery(UnexpectedRowsExpectation):
    """GX's UnexpectedRowsExpectation, run once instead of twice: the query returns the bad rows with their
    total in a ``_bad_rows`` column (``count(*) OVER ()``), so GX's separate ``COUNT(*)`` of the same query
    (a second sort or join of 25M rows) is not needed. The result carries up to 5 example rows."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        rows = metrics["unexpected_rows_query.table"]
        count = int(rows[0][BAD_ROWS]) if rows else 0
        examples = [{k: v for k, v in r.items() if k != BAD_ROWS} for r in rows[:5]]
        return {"success": count == 0, "result": {"observed_value": count, "details": {"unexpected_rows": examples}}}
