"""MovieLens files -> typed Parquet tables, with DuckDB (columnar; 25M ratings in seconds).

Tables (same schema for every release, so later stages never care which one it was):

    ratings        userId int32, movieId int32, rating float32, timestamp int64 (unix seconds)
    movies         movieId int32, title string (as released), name string (title without year,
                   "Matrix, The" -> "The Matrix"), year int16 (null if absent), genres list<string>
    tags           userId int32, movieId int32, tag string, timestamp int64
    links          movieId int32, imdbId string (keeps leading zeros), tmdbId int64
    genome_scores  movieId int32, tagId int32, relevance float32   (ml-25m only)
    genome_tags    tagId int32, tag string                         (ml-25m only)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from elm.fileops import write_errno
from elm.sql import sql_literal

log = logging.getLogger(__name__)

CSV_COLUMNS: dict[str, dict[str, str]] = {
    "ratings.csv": {"userId": "INTEGER", "movieId": "INTEGER", "rating": "FLOAT", "timestamp": "BIGINT"},
    "movies.csv": {"movieId": "INTEGER", "title": "VARCHAR", "genres": "VARCHAR"},
    "tags.csv": {"userId": "INTEGER", "movieId": "INTEGER", "tag": "VARCHAR", "timestamp": "BIGINT"},
    "links.csv": {"movieId": "INTEGER", "imdbId": "VARCHAR", "tmdbId": "BIGINT"},
    "genome-scores.csv": {"movieId": "INTEGER", "tagId": "INTEGER", "relevance": "FLOAT"},
    "genome-tags.csv": {"tagId": "INTEGER", "tag": "VARCHAR"},
}

ML100K_GENRES = [
    "(no genres listed)", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
]  # u.genre order; "unknown" -> no genre, "Children's" -> "Children" as in later releases

# Title "Name, The (Alt) (1995)" -> name "The Name (Alt)", year 1995. Ranges "(2006-2007)" take the first year.
_MOVIE_COLUMNS_SQL = r"""
    movieId::INTEGER AS movieId,
    trim(title) AS title,
    regexp_replace(
        trim(regexp_replace(title, '\s*\((\d{4})(?:[-–]\d{4})?\)?\s*$', '')),
        '^(.*), (The|A|An)( \(.*\))?$', '\2 \1\3'
    ) AS name,
    TRY_CAST(nullif(regexp_extract(title, '\((\d{4})(?:[-–]\d{4})?\)?\s*$', 1), '') AS SMALLINT) AS year,
    list_filter(string_split(genres, '|'), lambda g: g <> '(no genres listed)' AND g <> '') AS genres
"""


class TableFormatError(ValueError):
    """A source file does not have the expected columns or values."""


def _check_header(path: Path, expected: list[str]) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().strip().lstrip("\ufeff")
    cols = [c.strip() for c in header.split(",")]
    missing = [c for c in expected if c not in cols]
    if missing:
        raise TableFormatError(
            f"{path}: missing column(s) {', '.join(missing)}; header is {header!r}, expected {','.join(expected)}"
        )


def _read_csv_sql(path: Path, columns: dict[str, str], options: str = "header=true") -> str:
    cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
    return (f"read_csv({sql_literal(str(path))}, {options}, auto_detect=false, columns={{{cols}}}, "
            f"quote='\"', escape='\"')")


def convert(folder: Path, layout: str, out_dir: Path, threads: int | None = None) -> dict[str, Path]:
    """Write every table for the release in ``folder`` as ``out_dir/<table>.parquet``."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if layout == "csv":
            return _convert_csv(con, folder, out_dir)
        if layout == "ml-100k":
            return _convert_ml100k(con, folder, out_dir)
        raise ValueError(f"unknown layout {layout!r}")
    finally:
        con.close()


def _copy(con: duckdb.DuckDBPyConnection, select_sql: str, out: Path, source: Path) -> Path:
    try:
        con.execute(f"COPY ({select_sql}) TO {sql_literal(str(out))} "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)")
    except duckdb.Error as e:
        if code := write_errno(e):  # the output cannot be written: not the source's fault
            raise OSError(code, os.strerror(code), str(out)) from e
        msg = str(e).splitlines()[0:6]
        raise TableFormatError(f"{source}: cannot be read as the expected table: {' '.join(msg)}") from e
    return out


def _convert_csv(con, folder: Path, out_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for fname, cols in CSV_COLUMNS.items():
        src = folder / fname
        if not src.exists():
            continue
        _check_header(src, list(cols))
        read = _read_csv_sql(src, cols)
        table = fname.removesuffix(".csv").replace("-", "_")
        # Other tables keep file order (ratings: by user, then movie); no sort of 25M rows.
        sql = f"SELECT {_MOVIE_COLUMNS_SQL} FROM {read} ORDER BY movieId" if table == "movies" else f"SELECT * FROM {read}"
        out[table] = _copy(con, sql, out_dir / f"{table}.parquet", src)
        log.info("converted %s -> %s", src.name, out[table].name)
    return out


def _convert_ml100k(con, folder: Path, out_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    ratings = folder / "u.data"
    out["ratings"] = _copy(
        con,
        f"""SELECT userId, movieId, rating::FLOAT AS rating, timestamp FROM read_csv({sql_literal(str(ratings))}, delim='\t',
            header=false, auto_detect=false,
            columns={{'userId': 'INTEGER', 'movieId': 'INTEGER', 'rating': 'INTEGER', 'timestamp': 'BIGINT'}})""",
        out_dir / "ratings.parquet",
        ratings,
    )
    items = folder / "u.item"
    flag_cols = {f"g{i}": "INTEGER" for i in range(19)}
    item_cols = {"movieId": "INTEGER", "title": "VARCHAR", "released": "VARCHAR", "video": "VARCHAR",
                 "imdb_url": "VARCHAR", **flag_cols}
    genre_list = "[" + ", ".join(f"CASE WHEN g{i} = 1 THEN '{g}' END" for i, g in enumerate(ML100K_GENRES)) + "]"
    read = _read_csv_sql(items, item_cols, "header=false, delim='|', encoding='latin-1'")
    out["movies"] = _copy(
        con,
        f"""SELECT {_MOVIE_COLUMNS_SQL} FROM (
                SELECT movieId, title, array_to_string(list_filter({genre_list}, lambda g: g IS NOT NULL), '|') AS genres
                FROM {read}) ORDER BY movieId""",
        out_dir / "movies.parquet",
        items,
    )
    # ml-100k has no tags and no TMDB links: empty tables with the common schema.
    out["tags"] = _copy(
        con,
        "SELECT NULL::INTEGER AS userId, NULL::INTEGER AS movieId, NULL::VARCHAR AS tag, NULL::BIGINT AS timestamp "
        "WHERE false",
        out_dir / "tags.parquet",
        items,
    )
    out["links"] = _copy(
        con,
        f"SELECT movieId, NULL::VARCHAR AS imdbId, NULL::BIGINT AS tmdbId FROM {read} ORDER BY movieId",
        out_dir / "links.parquet",
        items,
    )
    return out
