"""Great Expectations suites for the ingested tables; a failure raises with what, where, and example rows.

GX does not raise on a failed expectation: it returns results. ``validate_tables`` turns the
first failures into one ``DataValidationError`` so the ingest stage publishes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
import pandas as pd

log = logging.getLogger(__name__)

HALF_STARS = [x / 2 for x in range(1, 11)]  # 0.5 .. 5.0


class DataValidationError(ValueError):
    """One or more expectations failed; the message names table, expectation and example rows."""


@dataclass(frozen=True)
class Failure:
    table: str
    expectation: str
    kwargs: dict
    unexpected_count: int | None
    examples: list[dict]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.kwargs.items() if k != "batch_id")
        count = f"{self.unexpected_count} bad row(s)" if self.unexpected_count is not None else "failed"
        ex = "; ".join(str(r) for r in self.examples[:5])
        return f"table {self.table!r}: {self.expectation}({args}): {count}" + (f"; e.g. {ex}" if ex else "")


def _short(v) -> str:
    if isinstance(v, (list, tuple, set)) and len(v) > 6:
        return f"[{len(v)} values]"
    return repr(v)


def _suites(tables: dict[str, pd.DataFrame]) -> dict[str, list]:
    """Expectations per table. Referential checks take their value sets from the movies table."""
    import great_expectations as gx

    E = gx.expectations
    movie_ids = tables["movies"]["movieId"].unique().tolist() if "movies" in tables else None
    suites: dict[str, list] = {
        "ratings": [
            E.ExpectTableColumnsToMatchSet(column_set=["userId", "movieId", "rating", "timestamp"], exact_match=True),
            *[E.ExpectColumnValuesToNotBeNull(column=c) for c in ("userId", "movieId", "rating", "timestamp")],
            E.ExpectColumnValuesToBeInSet(column="rating", value_set=HALF_STARS),
            E.ExpectCompoundColumnsToBeUnique(column_list=["userId", "movieId"]),
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
            E.ExpectCompoundColumnsToBeUnique(column_list=["movieId", "tagId"]),
        ],
        "genome_tags": [
            E.ExpectColumnValuesToBeUnique(column="tagId"),
            E.ExpectColumnValuesToNotBeNull(column="tag"),
        ],
    }
    if movie_ids is not None:
        for t in ("ratings", "tags", "links", "genome_scores"):
            suites[t].append(E.ExpectColumnValuesToBeInSet(column="movieId", value_set=movie_ids))
    return {t: s for t, s in suites.items() if t in tables}


def validate_tables(tables: dict[str, pd.DataFrame], *, max_failures: int = 10) -> dict[str, int]:
    """Run every table's suite; raise ``DataValidationError`` if anything fails. Returns checks per table."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("movielens")
    failures: list[Failure] = []
    counts: dict[str, int] = {}
    for table, expectations in _suites(tables).items():
        df = tables[table]
        batch_def = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
        suite = ctx.suites.add(gx.ExpectationSuite(name=table, expectations=expectations))
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
        counts[table] = len(result.results)
        for r in result.results:
            if r.success:
                continue
            idx = (r.result or {}).get("partial_unexpected_index_list") or []
            rows = _example_rows(df, idx)
            if not rows and (r.result or {}).get("partial_unexpected_list"):
                rows = [{"value": v} for v in r.result["partial_unexpected_list"][:5]]
            if r.exception_info and r.exception_info.get("raised_exception"):
                rows = [{"error": r.exception_info.get("exception_message")}]
            failures.append(
                Failure(table, r.expectation_config.type, dict(r.expectation_config.kwargs),
                        (r.result or {}).get("unexpected_count"), rows)
            )
        log.info("validated %s: %d expectations, %d failed", table, len(result.results),
                 sum(not r.success for r in result.results))
    if failures:
        lines = "\n  ".join(str(f) for f in failures[:max_failures])
        raise DataValidationError(f"{len(failures)} expectation(s) failed; nothing was published:\n  {lines}")
    return counts


def _example_rows(df: pd.DataFrame, idx: list) -> list[dict]:
    out = []
    for i in idx[:5]:
        if isinstance(i, dict):  # compound expectations report the columns' values
            out.append(i)
            continue
        try:
            out.append({"row": int(i), **{k: _plain(v) for k, v in df.loc[i].to_dict().items()}})
        except (KeyError, TypeError, ValueError):
            out.append({"row": i})
    return out


def _plain(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return v

