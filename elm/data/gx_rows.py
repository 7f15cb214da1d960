"""Great Expectations expectations for SQL data sources: no rows come back from a query, which runs once;
and the same with a cheap sufficient test that, when it passes, spares the costly query."""

from __future__ import annotations

from typing import ClassVar

from great_expectations.expectations import UnexpectedRowsExpectation

BAD_ROWS = "_bad_rows"
"""The column of the query that holds the number of bad rows: ``count(*) OVER () AS _bad_rows``."""
METRIC = "unexpected_rows_query.table"


class ExpectNoRowsFromQuery(UnexpectedRowsExpectation):
    """GX's UnexpectedRowsExpectation, run once instead of twice: the query returns the bad rows with their
    total in a ``_bad_rows`` column (``count(*) OVER ()``), so GX's separate ``COUNT(*)`` of the same query
    (a second sort or join of 25M rows) is not needed. The result carries up to 5 example rows."""

    metric_dependencies: ClassVar[tuple[str, ...]] = (METRIC,)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        return self._result(metrics[METRIC])

    @staticmethod
    def _result(rows: list[dict]) -> dict:
        count = int(rows[0][BAD_ROWS]) if rows else 0
        examples = [{k: v for k, v in r.items() if k != BAD_ROWS} for r in rows[:5]]
        return {"success": count == 0, "result": {"observed_value": count, "details": {"unexpected_rows": examples}}}


class ExpectNoRowsFromQueryUnlessProven(ExpectNoRowsFromQuery):
    """``proof_query`` runs first: it returns no rows only when ``unexpected_rows_query`` would return none
    (e.g. one streaming pass showing a file's keys strictly increase, instead of a sort proving them unique).
    Its rows prove nothing either way, so when it returns any, ``unexpected_rows_query`` runs and its rows
    are the result. GX computes every declared metric before validating, so neither query is declared: both
    run here, in turn, through the same metric GX would use (``{batch}`` substituted, rows capped)."""

    proof_query: str
    metric_dependencies: ClassVar[tuple[str, ...]] = ()

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None) -> dict:
        rows = self._rows(self.proof_query, runtime_configuration, execution_engine)
        if rows:
            rows = self._rows(self.unexpected_rows_query, runtime_configuration, execution_engine)
        return self._result(rows)

    def _rows(self, query: str, runtime_configuration: dict | None, execution_engine) -> list[dict]:
        from great_expectations.expectations.registry import get_metric_kwargs
        from great_expectations.validator.metric_configuration import MetricConfiguration

        domain = get_metric_kwargs(METRIC, self.configuration, runtime_configuration)["metric_domain_kwargs"]
        metric = MetricConfiguration(METRIC, domain, {"unexpected_rows_query": query})
        return execution_engine.resolve_metrics([metric])[metric.id]
