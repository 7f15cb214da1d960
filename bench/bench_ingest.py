"""Ingestion at ml-25m scale: 25M ratings and the 15.6M-row tag genome with ml-25m's schema, value ranges
and file order (ratings by user, then movie; genome scores by movie, then tag), against plain pandas.

    .venv/bin/python bench/bench_ingest.py [--rows 25000095] [--keep DIR] [--pandas-validation]

Prints seconds and the ratio against a ``pandas.read_csv`` + ``DataFrame.to_parquet`` baseline, and the
validated ingest (convert + GX in DuckDB + publish) against the bare DuckDB conversion (target: at most 2x),
all measured in this run on the same files; then the same ratio for the ratings and for the genome tables
on their own (each converted, then validated with the movies table their movieIds refer to). Importing
great_expectations (seconds, once per process) is timed on its own line, before the others.
``--pandas-validation`` also times the same suites run by GX on pandas DataFrames, as ingest did before
(referential check as a value set of all movieIds). The real ml-25m ratings.csv and genome-scores.csv cannot
be downloaded here: they are generated (genome-tags.csv is the real one when ../shared has it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from elm.settings import apply_env_defaults  # noqa: E402

apply_env_defaults()

import duckdb  # noqa: E402

ML25M_USERS = 162541
ML25M_MOVIES = 62423
GENOME_MOVIES, GENOME_TAGS = 13816, 1128  # ml-25m's genome: 15,584,448 scores, every tag for every movie in it
SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/movielens/ml-25m"
SHARED_MOVIES = SHARED / "movies.reconstructed.csv"


def make_release(folder: Path, rows: int) -> None:
    """movies.csv (the ml-25m catalog if available), ratings.csv with unique (user, movie) pairs in
    MovieLens's order, tags, links, and the tag genome."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    if SHARED_MOVIES.exists():
        shutil.copy(SHARED_MOVIES, folder / "movies.csv")
    else:
        con.execute(f"""COPY (SELECT i AS movieId, 'Movie ' || i || ' (' || (1900 + i % 120) || ')' AS title,
            'Drama|Comedy' AS genres FROM range(1, {ML25M_MOVIES + 1}) t(i)) TO '{folder}/movies.csv' (HEADER)""")
    con.execute(f"CREATE TABLE ids AS SELECT row_number() OVER (ORDER BY movieId) - 1 AS k, movieId "
                f"FROM read_csv('{folder}/movies.csv', header=true)")
    n_movies = con.execute("SELECT count(*) FROM ids").fetchone()[0]
    per_user = -(-rows // ML25M_USERS)
    # For a fixed user, (u*7919 + j*104729) mod n is distinct for j < n (104729 is prime, coprime to n).
    con.execute(f"""
        COPY (
            SELECT (i // {per_user}) + 1 AS userId, ids.movieId,
                   ((hash(i) % 10) + 1) / 2.0 AS rating,
                   789652009 + (hash(i * 31) % 785000000) AS timestamp
            FROM range({rows}) t(i)
            JOIN ids ON ids.k = (((i // {per_user}) + 1) * 7919 + (i % {per_user}) * 104729) % {n_movies}
            ORDER BY userId, ids.movieId
        ) TO '{folder}/ratings.csv' (HEADER)""")
    con.execute(f"COPY (SELECT 3 AS userId, movieId, 'classic' AS tag, 1439472215 AS timestamp FROM ids LIMIT 1000) "
                f"TO '{folder}/tags.csv' (HEADER)")
    con.execute(f"COPY (SELECT movieId, lpad((k + 100000)::VARCHAR, 7, '0') AS imdbId, k AS tmdbId FROM ids) "
                f"TO '{folder}/links.csv' (HEADER)")
    make_genome(con, folder)


def make_genome(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """genome-tags.csv (the real one if available) and genome-scores.csv: a relevance in [0, 1] with five
    decimals for every (movie, tag) of 13,816 movies spread over the catalog, ordered by movie, then tag."""
    if (SHARED / "genome-tags.csv").exists():
        shutil.copy(SHARED / "genome-tags.csv", folder / "genome-tags.csv")
    else:
        con.execute(f"COPY (SELECT i AS tagId, 'tag ' || i AS tag FROM range(1, {GENOME_TAGS + 1}) t(i)) "
                    f"TO '{folder}/genome-tags.csv' (HEADER)")
    con.execute(f"""
        COPY (
            SELECT m.movieId, t.tagId, round((hash(m.movieId * 7919 + t.tagId) % 100000) / 100000.0, 5) AS relevance
            FROM (SELECT movieId FROM read_csv('{folder}/movies.csv', header=true)
                  ORDER BY hash(movieId) LIMIT {GENOME_MOVIES}) m
            CROSS JOIN (SELECT tagId FROM read_csv('{folder}/genome-tags.csv', header=true)) t
            ORDER BY m.movieId, t.tagId
        ) TO '{folder}/genome-scores.csv' (HEADER)""")


def pandas_validation(folder: Path) -> float:
    """Seconds for the ingest suites run by GX on pandas DataFrames (read included), as ingest did before."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from elm.data.gx_rows import ExpectNoRowsFromQuery
    from elm.data.validation import suites

    t = time.perf_counter()
    tables = {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}
    ids = tables["movies"]["movieId"].unique().tolist()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("bench")
    for table, expectations in suites(list(tables)).items():
        keys = [e for e in expectations if not isinstance(e, ExpectNoRowsFromQuery)]
        if table in ("ratings", "genome_scores"):
            cols = ["userId", "movieId"] if table == "ratings" else ["movieId", "tagId"]
            keys.append(gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=cols))
        if table != "movies":
            keys.append(gx.expectations.ExpectColumnValuesToBeInSet(column="movieId", value_set=ids))
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table).get_batch(
            batch_parameters={"dataframe": tables[table]})
        result = batch.validate(ctx.suites.add(gx.ExpectationSuite(name=table, expectations=keys)))
        assert result.success, table
    return time.perf_counter() - t


def part(release: Path, files: list[str], out: Path) -> tuple[float, float]:
    """Seconds to convert ``files`` of the release, then to validate their tables (with the movies table
    their movieIds are checked against, converted beforehand and not timed)."""
    from elm.data.tables import convert
    from elm.data.validation import validate_tables

    only_movies, only_part = out / "src-movies", out / "src"
    for folder, names in ((only_movies, ["movies.csv"]), (only_part, files)):
        folder.mkdir(parents=True)
        for f in names:
            (folder / f).symlink_to(release / f)
    movies = convert(only_movies, "csv", out / "movies")
    t = time.perf_counter()
    paths = convert(only_part, "csv", out / "tables")
    t_conv = time.perf_counter() - t
    t = time.perf_counter()
    validate_tables({**movies, **paths})
    return t_conv, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=25_000_095, help="ratings rows (ml-25m has 25,000,095)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the generated release in this folder")
    ap.add_argument("--pandas-validation", action="store_true",
                    help="also time GX on pandas DataFrames (the way ingest validated before)")
    a = ap.parse_args()

    from elm.artifacts import ArtifactStore
    from elm.data.ingest import IngestConfig, ingest
    from elm.data.tables import convert

    work = a.keep or Path(tempfile.mkdtemp(prefix="elm-bench-ingest-"))
    release = work / "ml-25m"
    for old in ("artifacts", "convert_only", "parts"):  # a kept folder's earlier run would be a cache hit
        shutil.rmtree(work / old, ignore_errors=True)
    t = time.perf_counter()
    if not (release / "ratings.csv").exists():
        make_release(release, a.rows)
    elif not (release / "genome-scores.csv").exists():  # a folder kept by an earlier version of this bench
        make_genome(duckdb.connect(), release)
    print(f"generated {a.rows:,} ratings ({(release / 'ratings.csv').stat().st_size / 1e6:.0f} MB) and the genome "
          f"({(release / 'genome-scores.csv').stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")

    import pandas as pd

    t = time.perf_counter()
    df = pd.read_csv(release / "ratings.csv")
    df.to_parquet(work / "pandas_ratings.parquet")
    t_pandas = time.perf_counter() - t
    del df

    t = time.perf_counter()
    import great_expectations  # noqa: F401  a fixed cost of any process that validates, timed on its own
    t_import = time.perf_counter() - t

    t = time.perf_counter()
    convert(release, "csv", work / "convert_only")
    t_convert = time.perf_counter() - t

    t = time.perf_counter()
    art, _ = ingest(IngestConfig(dataset="ml-25m", source=str(release), verify=False), ArtifactStore(work / "artifacts"))
    t_ingest = time.perf_counter() - t
    assert art.rows["ratings.parquet"] == a.rows

    print(f"{'step':<58}{'seconds':>9}{'vs pandas':>11}")
    print(f"{'baseline: pandas.read_csv + to_parquet (ratings only)':<58}{t_pandas:>9.1f}{1.0:>10.2f}x")
    print(f"{'elm DuckDB conversion (all tables)':<58}{t_convert:>9.1f}{t_pandas / t_convert:>10.2f}x")
    print(f"{'elm ingest: convert + GX validation + publish':<58}{t_ingest:>9.1f}{t_pandas / t_ingest:>10.2f}x")
    print(f"{'  (import great_expectations, once per process, not above)':<58}{t_import:>9.1f}")
    if a.pandas_validation:
        t_gx_pandas = pandas_validation(work / "convert_only")
        print(f"{'  (before: GX on pandas DataFrames, validation only)':<58}{t_gx_pandas:>9.1f}")
    print(f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; ratio > 1 means faster than the baseline")
    print(f"validated ingest / bare conversion: {t_ingest / t_convert:.2f}x (target <= 2)")
    for name, files in (("ratings", ["ratings.csv"]), ("genome", ["genome-scores.csv", "genome-tags.csv"])):
        t_conv, t_valid = part(release, files, work / "parts" / name)
        print(f"  {name} alone: conversion {t_conv:.1f}s, validation {t_valid:.1f}s: "
              f"validated / conversion {(t_conv + t_valid) / t_conv:.2f}x")
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
