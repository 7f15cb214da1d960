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
def synthesize(
    teacher: str = typer.Option("local", help="local (a transformers LM here), openai (a chat endpoint) or template."),
    tasks: str = typer.Option("all", help="Comma-separated task names, or 'all' (see elm/task_catalog.py)."),
    train_movies: Optional[int] = typer.Option(None, help="Training movies to write targets for; -1 for all. [default: SynthesisConfig's]."),
    heldout_movies: Optional[int] = typer.Option(None, help="Held-out movies (each gets every task); -1 for all. [default: SynthesisConfig's]."),
    train_users: Optional[int] = typer.Option(None, help="Training users for user_profile; -1 for all. [default: SynthesisConfig's]."),
    heldout_users: Optional[int] = typer.Option(None, help="Held-out users; -1 for all. [default: SynthesisConfig's]."),
    tasks_per_movie: Optional[int] = typer.Option(None, help="Tasks sampled per training movie; -1 for every task. [default: SynthesisConfig's]."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Cap on every task's target length in tokens."),
    partner_space: str = typer.Option("semantic", help="Space of 'nearest' partners: semantic or behavioral."),
    seed: int = typer.Option(0, help="Sampling of entities, tasks, partners and teacher sampling."),
    model: str = typer.Option("SmolLM2-135M-Instruct", help="local: model name, folder or hub id."),
    batch_size: int = typer.Option(16, help="local: prompts per generate call."),
    temperature: float = typer.Option(0.0, help="local/openai: 0 = greedy."),
    base_url: Optional[str] = typer.Option(None, help="openai: API root, e.g. http://127.0.0.1:8000/v1."),
    api_model: Optional[str] = typer.Option(None, help="openai: model name as the server knows it."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="openai: environment variable holding the key."),
    concurrency: int = typer.Option(8, help="openai: requests in flight."),
    version: list[str] = typer.Option([], "--from", help="Input versions as stage=version (default: latest of "
                                      "ingest, splits, semantic, behavioral), e.g. --from semantic=3f2a."),
    samples: int = typer.Option(1, help="Sample targets printed per task."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """Teacher-written targets for the 24 movie tasks and user profiles, checked, with a reference SC table.

    Reads the latest ingest/splits/semantic/behavioral artifacts (run `elm embeddings` first). Resumable:
    an interrupted run continues where it stopped; an unchanged re-run is a cache hit.
    """
    from elm.synthesis import SynthesisConfig, report, samples as sample_targets, synthesize as run
    from elm.teacher_local import LocalTeacherConfig
    from elm.teacher_openai import OpenAITeacherConfig

    counts = {k: (None if v < 0 else v) for k, v in dict(
        train_movies=train_movies, heldout_movies=heldout_movies, train_users=train_users,
        heldout_users=heldout_users, tasks_per_movie=tasks_per_movie).items() if v is not None}

    store = _store(artifacts)
    try:
        pinned = dict(v.split("=", 1) for v in version)
        arts = {k: store.resolve(k, pinned.get(k)) for k in ("ingest", "splits", "semantic", "behavioral")}
        openai = None
        if teacher == "openai":
            if not base_url or not api_model:
                raise ValueError("--teacher openai needs --base-url and --api-model")
            openai = OpenAITeacherConfig(base_url=base_url, model=api_model, api_key_env=api_key_env,
                                         max_concurrency=concurrency, temperature=temperature)
        cfg = SynthesisConfig(
            teacher=teacher, tasks=tuple(t.strip() for t in tasks.split(",")), **counts,
            max_new_tokens=max_new_tokens, partner_space=partner_space,
            seed=seed, local=LocalTeacherConfig(model=model, batch_size=batch_size, temperature=temperature),
            openai=openai)
        art, hit = run(arts, cfg, store)
    except Exception as e:  # noqa: BLE001
        _fail(e)
    typer.echo(("cache hit: " if hit else "") + art.describe())
    typer.echo(report(art))
    if samples:
        for r in sample_targets(art, samples).itertuples():
            typer.echo(f"\n[{r.task}] {r.title}\n  " + r.target.replace("\n", "\n  "))


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
