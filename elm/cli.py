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
    from elm.ingest import IngestConfig
    from elm.ingest import ingest as run
    from elm.settings import data_dir

    try:
        art, hit = run(IngestConfig(dataset=dataset, source=source, verify=verify), _store(artifacts), data or data_dir())
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear line
        _fail(e)
    typer.echo(("cache hit: " if hit else "") + art.describe())


@app.command()
def embeddings(
    dataset: str = typer.Option("ml-latest-small", help="Dataset to ingest first (a cache hit if already done)."),
    source: Optional[str] = typer.Option(None, help="Source of the dataset (see `elm ingest --help`)."),
    ingest_version: Optional[str] = typer.Option(None, help="Use this ingest artifact version instead of ingesting."),
    factors: Optional[int] = typer.Option(None, help="WALS: dimension of the behavioral vectors (default: WALSConfig's)."),
    regularization: Optional[float] = typer.Option(None, help="WALS: L2 regularisation (default: WALSConfig's)."),
    iterations: Optional[int] = typer.Option(None, help="WALS: ALS sweeps (default: WALSConfig's)."),
    alpha: Optional[float] = typer.Option(None, help="WALS: confidence scale (default: WALSConfig's)."),
    weighting: Optional[str] = typer.Option(None, help="WALS: how ratings become confidence weights (see elm/behavioral.py)."),
    wals_seed: int = typer.Option(0, help="WALS: random seed."),
    heldout_movies: float = typer.Option(0.1, help="Fraction of movies held out from ELM training."),
    heldout_users: float = typer.Option(0.1, help="Fraction of users held out from ELM training."),
    split_seed: int = typer.Option(0, help="Seed of the train/held-out split."),
    encoder: str = typer.Option("all-MiniLM-L6-v2", help="Sentence-transformers model id or path (default ships offline)."),
    batch_size: int = typer.Option(64, help="Encoder batch size."),
    extra_text: Optional[Path] = typer.Option(None, help="Parquet/CSV with movieId,text appended to movie documents."),
    artifacts: Optional[Path] = ArtifactsOpt,
    data: Optional[Path] = DataOpt,
) -> None:
    """Behavioral (WALS) and semantic (sentence encoder) embeddings plus train/held-out splits.

    Prints CF quality against a popularity baseline and the nearest neighbours of a few well-known movies.
    """
    from elm.behavioral import WALSConfig
    from elm.embeddings import EmbeddingsConfig, SemanticConfig, SplitConfig, report, run_embeddings
    from elm.ingest import IngestConfig
    from elm.ingest import ingest as run_ingest
    from elm.settings import data_dir

    store = _store(artifacts)
    try:
        wals_kw = {k: v for k, v in dict(factors=factors, regularization=regularization, iterations=iterations,
                                         alpha=alpha, weighting=weighting).items() if v is not None}
        cfg = EmbeddingsConfig(
            splits=SplitConfig(heldout_movies=heldout_movies, heldout_users=heldout_users, seed=split_seed),
            wals=WALSConfig(seed=wals_seed, **wals_kw),
            semantic=SemanticConfig(encoder=encoder, batch_size=batch_size,
                                    extra_text=str(extra_text) if extra_text else None),
        )
        if ingest_version:
            ingest_art = store.resolve("ingest", ingest_version)
        else:
            ingest_art, _ = run_ingest(IngestConfig(dataset=dataset, source=source), store, data or data_dir())
        arts = run_embeddings(ingest_art, cfg, store)
    except Exception as e:  # noqa: BLE001
        _fail(e)
    for stage, (art, hit) in arts.items():
        typer.echo(f"{'cache hit: ' if hit else ''}{stage} {art.version} at {art.path}")
    typer.echo(report({k: a for k, (a, _) in arts.items()}))


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
