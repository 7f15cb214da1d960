"""The ``elm`` command line. Each subcommand runs one stage of the pipeline through the library.

The Prefect flows in ``flows/`` call the same functions; this CLI needs no Prefect server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from elm.settings import quiet_third_party

quiet_third_party()

app = typer.Typer(
    help="ELM: train and query Embedding Language Models over MovieLens embeddings. "
    "Every stage writes a versioned artifact under --artifacts; re-running with the same inputs is a cache hit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ArtifactsOpt = typer.Option(None, "--artifacts", help="Artifact store folder [env ELM_ARTIFACTS_DIR, default ./artifacts].")
DataOpt = typer.Option(None, "--data", help="Folder for downloads [env ELM_DATA_DIR, default ./data].")


def _store(artifacts: Optional[Path]):
    from elm.artifacts import ArtifactStore
    from elm.settings import artifacts_dir

    return ArtifactStore(artifacts or artifacts_dir())


def _fail(e: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {type(e).__name__}: {e}", markup=True, highlight=False)
    raise typer.Exit(code=1)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    from elm.logs import setup

    setup(verbose)


@app.command()
def ingest(
    dataset: str = typer.Option("ml-latest-small", help="ml-latest-small (embedded), ml-25m or ml-100k."),
    source: Optional[str] = typer.Option(
        None,
        help="A folder, a .zip or a URL holding the release. Default: $ELM_MOVIELENS_DIR/<dataset>, "
        "the copy shipped with elm (ml-latest-small), else the official GroupLens download.",
    ),
    verify: bool = typer.Option(True, help="Check files against the official sha256 (downloads always are)."),
    artifacts: Optional[Path] = ArtifactsOpt,
    data: Optional[Path] = DataOpt,
) -> None:
    """Ingest a MovieLens release into validated Parquet tables (ratings, movies, tags, links[, genome])."""
    from elm.ingest import IngestConfig, describe
    from elm.ingest import ingest as run
    from elm.settings import data_dir

    try:
        art, hit = run(IngestConfig(dataset=dataset, source=source, verify=verify), _store(artifacts), data or data_dir())
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
        _fail(e)
    typer.echo(("cache hit: " if hit else "") + describe(art))


@app.command()
def sql(
    query: str = typer.Argument(..., help='SQL over the artifact views, e.g. "select * from manifests".'),
    artifacts: Optional[Path] = ArtifactsOpt,
    max_rows: int = typer.Option(40, help="Rows to print."),
) -> None:
    """Run SQL in DuckDB over every artifact: views <stage>_<table> (latest), <stage>_<table>_all, and manifests."""
    import duckdb

    from elm.sql import connect

    con = connect(_store(artifacts))
    try:
        rel = con.sql(query)
    except duckdb.Error as e:
        _fail(e)
    if rel is not None:
        rel.show(max_rows=max_rows, max_width=200)


@app.command("artifacts")
def list_artifacts(
    stage: Optional[str] = typer.Argument(None, help="Only this stage."), artifacts: Optional[Path] = ArtifactsOpt
) -> None:
    """List artifact versions (newest last), marking the latest of each stage."""
    store = _store(artifacts)
    for st in [stage] if stage else store.stages():
        latest = store.latest(st)
        for art in store.versions(st):
            mark = "*" if latest and latest.version == art.version else " "
            rows = " ".join(f"{k.removesuffix('.parquet')}={v}" for k, v in art.rows.items())
            typer.echo(f"{mark} {st:<12} {art.version}  {art.manifest['created_at']}  {rows}")


if __name__ == "__main__":
    app()
