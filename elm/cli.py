"""The ``elm`` command line. Each subcommand runs one stage of the pipeline through the library.

The Prefect flows in ``flows/`` call the same functions; this CLI needs no Prefect server.

Why this file is long: one command per stage, each only options (with their help texts) and a call into
the stage's module; kept in one file so ``elm --help`` and the code read in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from elm.settings import apply_env_defaults

apply_env_defaults()

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
    from elm.artifacts import open_store

    return open_store(artifacts)


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
    from elm.data.ingest import IngestConfig
    from elm.data.ingest import ingest as run
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
    weighting: Optional[str] = typer.Option(None, help="WALS: how ratings become confidence weights (see elm/embed/behavioral.py)."),
    wals_seed: int = typer.Option(0, help="WALS: random seed."),
    heldout_movies: float = typer.Option(0.1, help="Fraction of movies held out from ELM training."),
    heldout_users: float = typer.Option(0.1, help="Fraction of users held out from ELM training."),
    split_seed: int = typer.Option(0, help="Seed of the train/held-out split."),
    encoder: Optional[str] = typer.Option(None, help="Sentence-transformers model id or path [default: SemanticConfig's, all-MiniLM-L6-v2, shipped offline]."),
    batch_size: int = typer.Option(64, help="Encoder batch size."),
    extra_text: Optional[Path] = typer.Option(None, help="Parquet/CSV with movieId,text appended to movie documents."),
    artifacts: Optional[Path] = ArtifactsOpt,
    data: Optional[Path] = DataOpt,
) -> None:
    """Behavioral (WALS) and semantic (sentence encoder) embeddings plus train/held-out splits.

    Prints CF quality against a popularity baseline and the nearest neighbours of a few well-known movies.
    """
    from elm.embed.behavioral import WALSConfig
    from elm.embed.stage import EmbeddingsConfig, SemanticConfig, SplitConfig, report, run_embeddings
    from elm.data.ingest import IngestConfig
    from elm.data.ingest import ingest as run_ingest
    from elm.settings import data_dir

    store = _store(artifacts)
    try:
        wals_kw = {k: v for k, v in dict(factors=factors, regularization=regularization, iterations=iterations,
                                         alpha=alpha, weighting=weighting).items() if v is not None}
        cfg = EmbeddingsConfig(
            splits=SplitConfig(heldout_movies=heldout_movies, heldout_users=heldout_users, seed=split_seed),
            wals=WALSConfig(seed=wals_seed, **wals_kw),
            semantic=SemanticConfig(**({"encoder": encoder} if encoder else {}), batch_size=batch_size,
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
    teacher: str = typer.Option("template", help="template (from metadata), local (a transformers LM here) or openai (a chat endpoint)."),
    tasks: str = typer.Option("all", help="Comma-separated task names, or 'all' (see elm/synth/catalog.py)."),
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
    retries: int = typer.Option(5, help="openai: retries per request on 429/5xx/timeouts (exponential backoff)."),
    version: list[str] = typer.Option([], "--from", help="Input versions as stage=version (default: latest of "
                                      "ingest, splits, semantic, behavioral), e.g. --from semantic=3f2a."),
    samples: int = typer.Option(1, help="Sample targets printed per task."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """Teacher-written targets for the 24 movie tasks and user profiles, checked, with a reference SC table.

    Reads the latest ingest/splits/semantic/behavioral artifacts (run `elm embeddings` first). Resumable:
    an interrupted run continues where it stopped; an unchanged re-run is a cache hit.
    """
    from elm.lineage import check_pins
    from elm.synth.stage import SYNTHESIZE, SynthesisConfig, report, samples as sample_targets, synthesize as run
    from elm.synth.teachers.local import LocalTeacherConfig
    from elm.synth.teachers.openai import OpenAITeacherConfig

    counts = {k: (None if v < 0 else v) for k, v in dict(
        train_movies=train_movies, heldout_movies=heldout_movies, train_users=train_users,
        heldout_users=heldout_users, tasks_per_movie=tasks_per_movie).items() if v is not None}

    store = _store(artifacts)
    try:
        pinned = dict(v.split("=", 1) for v in version)
        check_pins(SYNTHESIZE, pinned)
        arts = {k: store.resolve(k, pinned.get(k)) for k in SYNTHESIZE.inputs}
        openai = None
        if teacher == "openai":
            if not base_url or not api_model:
                raise ValueError("--teacher openai needs --base-url and --api-model")
            openai = OpenAITeacherConfig(base_url=base_url, model=api_model, api_key_env=api_key_env,
                                         max_concurrency=concurrency, max_retries=retries, temperature=temperature)
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
def describe(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="A catalog task, e.g. summary, positive_review, "
                                       "interpolation (two movies), user_profile (see elm/synth/catalog.py)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Free-form prompt instead of a task, with one "
                                         "<emb> where each vector goes, e.g. 'What do <emb> and <emb> share?'."),
    movie: list[int] = typer.Option([], "--movie", "-m", metavar="ID", help="movieId to describe (repeatable)."),
    user: list[int] = typer.Option([], "--user", "-u", metavar="ID", help="userId to describe (repeatable)."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", metavar="FILE", help="Raw vectors: .npy of shape (k, dim) or (dim,), "
                                           ".json (a list, or a list of lists) or a vector .parquet."),
    vector_space: Optional[str] = typer.Option(None, help="Space the --vectors are read in (default: the first "
                                               "space of the task slot's kind, e.g. semantic_movies)."),
    movie_space: Optional[str] = typer.Option(None, help="Space of --movie ids (default: the ELM's first movie space)."),
    user_space: Optional[str] = typer.Option(None, help="Space of --user ids (default: the ELM's first user space)."),
    model: Optional[Path] = typer.Option(None, "--model", metavar="FOLDER", help="A saved ELM folder (or a train artifact folder)."),
    version: Optional[str] = typer.Option(None, "--from", metavar="train=VERSION", help="The ELM of that train artifact "
                                          "(a version prefix is enough; default: the latest train artifact)."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Cap on answer length (default: the task's "
                                                 "max_target_tokens; 128 for --prompt)."),
    temperature: float = typer.Option(0.0, help="0 = greedy (the default); above 0 samples."),
    repetition_penalty: float = typer.Option(1.0, help="Penalty on repeated tokens (1.0 = off; above 1 it "
                                             "garbles repeated digits, e.g. decades)."),
    no_repeat_ngram_size: int = typer.Option(4, help="Ban repeating any n-gram of this size (0 = off)."),
    guidance: Optional[str] = typer.Option(None, metavar="SCALE", help="Vector guidance: the text leans toward what "
                                           "this vector says that the space's average does not (about 1.4x the time). 1 "
                                           "= off; one number, or movie=2,user=1 by slot kind. (default: movie=2,user=1)"),
    seed: int = typer.Option(0, help="Sampling seed (with --temperature > 0)."),
    batch_size: int = typer.Option(8, help="Prompts per generate batch."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1, ...; auto = cuda when available."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per answer instead of text."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """Ask a trained ELM to describe movies, users or raw vectors, with each vector's distance to the data.

    Inputs fill the prompt's slots in the order --movie ids, --user ids, --vectors rows; with more inputs than slots, each group of inputs gets its own answer.

    Under every answer, a line per vector names the nearest real movie or user and the cosine to it: 1.000 for a real entity; flagged "far from the data" below what 95% of real entities have to their own nearest neighbour (the text is then unreliable).

    Examples:
      elm describe --task summary --movie 1 --movie 260     (two answers)
      elm describe --task interpolation --movie 1 --movie 356
      elm describe --prompt "Compare <emb> and <emb>." -m 1 -m 2571
      elm describe --task user_profile --user 5 --from train=3f2a
      elm describe --task summary --vectors moved.npy --model out/elm
    """
    import json

    from transformers.utils.logging import disable_progress_bar

    from elm.serve.describe import Describer
    from elm.serve.loading import load_vector_file

    disable_progress_bar()  # "Loading weights" bars would bury the answers
    store = _store(artifacts)
    try:
        if model is not None and version is not None:
            raise ValueError("give --model or --from, not both")
        if version is not None and not version.startswith("train="):
            raise ValueError(f"--from takes train=VERSION, got {version!r}")
        d = Describer(model if model is not None else version, store, device=device)
        raw = load_vector_file(vectors) if vectors is not None else None
        answers = d.describe(task, prompt, movies=movie, users=user, vectors=raw,
                             vectors_name=vectors.name if vectors is not None else "vectors",
                             movie_space=movie_space, user_space=user_space, vector_space=vector_space,
                             max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature if temperature > 0 else 1.0,
                             repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                             batch_size=batch_size, seed=seed, guidance_scale=guidance)
    except Exception as e:  # noqa: BLE001
        _fail(e)
    for i, a in enumerate(answers):
        typer.echo(json.dumps(a.to_dict()) if as_json else ("\n" if i else "") + a.format())


@app.command()
def train(
    movie_space: Optional[str] = typer.Option(None, help="Vectors movie slots read: semantic or behavioral (user "
                                              "slots always read behavioral users). (default: semantic)"),
    stage1_steps: Optional[int] = typer.Option(None, help="Stage 1 (adapters only) steps. (default: TrainConfig's)"),
    stage2_steps: Optional[int] = typer.Option(None, help="Stage 2 (full or LoRA) steps; 0 skips it. (default: TrainConfig's)"),
    batch_size: Optional[int] = typer.Option(None, help="Examples per step (per process) in both stages. (default: 8)"),
    stage1_lr: Optional[float] = typer.Option(None, help="Stage 1 peak learning rate. (default: 3e-3)"),
    stage2_lr: Optional[float] = typer.Option(None, help="Stage 2 peak learning rate. (default: TrainConfig's)"),
    max_length: Optional[int] = typer.Option(None, help="Most tokens of prompt + target. (default: 128)"),
    base_model: Optional[str] = typer.Option(None, help="Base LM: name, folder or hub id. (default: SmolLM2-135M-Instruct)"),
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="Stage 2: LoRA on the LM (merged before saving) "
                                        "or full fine-tuning. (default: full)"),
    seed: Optional[int] = typer.Option(None, help="Adapter init, batch order, dropout. (default: 0)"),
    mixed_precision: Optional[str] = typer.Option(None, help="auto (from the accelerate config), no, bf16 or fp16."),
    accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config", help="YAML for `accelerate launch`: "
                                                    "cpu, gpu, multi_gpu (configs/accelerate/) or a path. (default: auto)"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of TrainConfig fields (elm/train/stage.py); "
                                          "the flags above override it."),
    version: list[str] = typer.Option([], "--from", help="Input versions as stage=version, e.g. --from synthesize=3f2a "
                                      "(default: latest synthesize, and the semantic/behavioral it was made from)."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """Train the ELM in two stages (adapters only, then everything or LoRA) with `accelerate launch`.

    Prints the validation loss on held-out rows before training and after each stage, and where the model is.
    Resumable: an interrupted run continues from its last checkpoint; an unchanged re-run is a cache hit.
    """
    from dataclasses import replace

    from elm.train.config import TrainConfig
    from elm.train.stage import report
    from elm.lineage import check_pins
    from elm.train.stage import TRAIN, train as run

    store = _store(artifacts)
    try:
        cfg = TrainConfig.load(config) if config else TrainConfig()
        top = {k: v for k, v in dict(movie_space=movie_space, max_length=max_length, base_model=base_model, seed=seed,
                                     mixed_precision=mixed_precision, accelerate_config=accelerate_config).items()
               if v is not None}
        both = {k: v for k, v in dict(batch_size=batch_size).items() if v is not None}
        s1 = {k: v for k, v in dict(steps=stage1_steps, lr=stage1_lr).items() if v is not None}
        s2 = {k: v for k, v in dict(steps=stage2_steps, lr=stage2_lr, lora=lora).items() if v is not None}
        cfg = replace(cfg, **top, stage1=replace(cfg.stage1, **both, **s1), stage2=replace(cfg.stage2, **both, **s2))
        pinned = dict(v.split("=", 1) for v in version)
        check_pins(TRAIN, pinned)
        arts = {k: store.resolve(k, v) for k, v in pinned.items() if k != "synthesize"}
        arts["synthesize"] = store.resolve("synthesize", pinned.get("synthesize"))
        art, hit = run(arts, cfg, store)
    except Exception as e:  # noqa: BLE001
        _fail(e)
    typer.echo(("cache hit: " if hit else "") + report(art))


@app.command()
def evaluate(
    heldout_per_task: Optional[int] = typer.Option(None, help="Held-out movies scored per movie task. (default: 24)"),
    heldout_users: Optional[int] = typer.Option(None, help="Held-out users whose profiles are scored. (default: 30)"),
    baseline_per_task: Optional[int] = typer.Option(None, help="Of those movies, how many the text-only baseline "
                                                    "answers per task (it is the slowest system). (default: 12)"),
    train_per_task: Optional[int] = typer.Option(None, help="Training entities per task, for the train/held-out "
                                                 "gap; 0 skips. (default: 2)"),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated tasks (default: every task with held-out "
                                        "examples)."),
    baseline: Optional[bool] = typer.Option(None, "--baseline/--no-baseline", help="Also score the text-only "
                                            "baseline (the base LLM reading titles). (default: on)"),
    max_new_tokens: Optional[int] = typer.Option(None, help="Cap on generated tokens per text. (default: 96)"),
    movie_pairs: Optional[int] = typer.Option(None, help="Movie pairs interpolated (Forrest Gump + others); 0 "
                                              "skips. (default: 10)"),
    user_pairs: Optional[int] = typer.Option(None, help="User pairs interpolated, scored with BC. (default: 3)"),
    cav_attributes: Optional[str] = typer.Option(None, help="Comma-separated soft attributes, genre:<Genre> or "
                                                 "tag:<tag>, e.g. genre:Comedy,tag:funny."),
    cav_movies: Optional[int] = typer.Option(None, help="Held-out movies moved along each CAV. (default: 10)"),
    cav_users: Optional[int] = typer.Option(None, help="Held-out users moved along each user CAV. (default: 10)"),
    batch_size: Optional[int] = typer.Option(None, help="Texts per generate call. (default: 16)"),
    guidance: Optional[str] = typer.Option(None, metavar="SCALE", help="Vector guidance, as in `elm describe "
                                           "--guidance`. (default: movie=2,user=1)"),
    dtype: Optional[str] = typer.Option(None, help="Weights while generating: auto (bfloat16 where native, else "
                                        "float32), float32 or bfloat16. (default: auto)"),
    seed: Optional[int] = typer.Option(None, help="Sampled entities and random references. (default: 0)"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of EvalConfig fields "
                                          "(elm/evaluate/stage.py); the flags above override it."),
    version: list[str] = typer.Option([], "--from", help="Input versions as stage=version: train=3f2a (default: "
                                      "the latest train artifact, and the artifacts it was made from)."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """Evaluate a trained ELM: SC/BC per task against random and teacher references, the text-only baseline,
    interpolation and CAV extrapolation. Writes the evaluate artifact and prints the per-task table and the
    controls (does the text follow the vector: specificity, shuffled controls, facts read back).

    Resumable: an interrupted run keeps its finished parts; an unchanged re-run is a cache hit.
    Then `elm report` turns it into tables, plots and a page.
    """
    from dataclasses import replace

    import pandas as pd

    from elm.evaluate.config import EvalConfig
    from elm.evaluate.context import resolve_inputs
    from elm.evaluate.controls import controls_text
    from elm.evaluate.stage import report
    from elm.evaluate.stage import evaluate as run

    store = _store(artifacts)
    try:
        cfg = EvalConfig.load(config) if config else EvalConfig()
        lists = {k: tuple(x.strip() for x in v.split(",") if x.strip())
                 for k, v in dict(tasks=tasks, cav_attributes=cav_attributes).items() if v is not None}
        flags = dict(heldout_per_task=heldout_per_task, heldout_users=heldout_users,
                     baseline_per_task=baseline_per_task, dtype=dtype, train_per_task=train_per_task, baseline=baseline,
                     max_new_tokens=max_new_tokens, movie_pairs=movie_pairs, user_pairs=user_pairs,
                     cav_movies=cav_movies, cav_users=cav_users, batch_size=batch_size, seed=seed, guidance_scale=guidance)
        cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None}, **lists)
        pinned = dict(v.split("=", 1) for v in version)
        arts = resolve_inputs(store, pinned.pop("train", None), pinned)
        art, hit = run(arts, cfg, store)
    except Exception as e:  # noqa: BLE001
        _fail(e)
    typer.echo(("cache hit: " if hit else "") + report(art))
    typer.echo(controls_text(pd.read_parquet(art.file("controls.parquet"))))
    typer.echo(f"artifact: {art.path}\nnext: elm report")


@app.command("report")
def report_cmd(
    version: Optional[str] = typer.Option(None, "--from", metavar="evaluate=VERSION", help="The evaluate artifact "
                                          "to report (default: the latest)."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """Turn an evaluate artifact into the report: per-task and headline tables (DuckDB SQL), PNG plots
    (SC/BC vs interpolation weight, vs CAV step), and one Markdown/HTML page with example generations.

    Prints the headline table and where the page is.
    """
    from elm.report.stage import build_report, headline_text

    store = _store(artifacts)
    try:
        if version is not None and not version.startswith("evaluate="):
            raise ValueError(f"--from takes evaluate=VERSION, got {version!r}")
        ev = store.resolve("evaluate", version.split("=", 1)[1] if version else None)
        art, hit = build_report(ev, store)
    except Exception as e:  # noqa: BLE001
        _fail(e)
    typer.echo(("cache hit: " if hit else "") + headline_text(art))


@app.command()
def explore(
    train: Optional[str] = typer.Option(None, "--train", metavar="VERSION", help="The train version (a prefix is "
                                        "enough) or a saved ELM folder; default: the latest train artifact."),
    port: int = typer.Option(8000, help="Port on 127.0.0.1 (the page is served on this machine only)."),
    dtype: str = typer.Option("auto", help="Generation dtype: auto (bfloat16 where fast), float32, bfloat16."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """A local web page to walk the ELM's embedding spaces and ask it about any point (http://127.0.0.1:PORT/).

    The map of each movie space (a PCA projection, kept as a `projection` artifact) loads at once; the model
    loads in the background and answers stream token by token. Stop with Ctrl-C.
    """
    import socket

    from elm.explore.app import Explorer, serve

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            _fail(OSError(f"port {port} on 127.0.0.1 is not free ({e.strerror}): pass --port with another one"))
    explorer = Explorer(_store(artifacts), train, dtype=dtype)
    if explorer.problem:
        typer.echo(f"note: {explorer.problem}", err=True)
    typer.echo(f"elm explore: open http://127.0.0.1:{port}/  (Ctrl-C to stop)")
    serve(explorer, port)


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
    stage: Optional[str] = typer.Argument(None, help="Only this stage."),
    check: bool = typer.Option(False, "--check", help="Hash every file against its manifest's sha256 (reads the "
                               "whole store); exit status 1 when any version is damaged."),
    artifacts: Optional[Path] = ArtifactsOpt,
) -> None:
    """List artifact versions (newest last), marking the latest of each stage (*) and damaged ones (!).

    A damaged version (no or an unreadable manifest, a file missing or changed) is rebuilt by the next run
    of the command that made it.
    """
    store = _store(artifacts)
    damaged = versions = files = 0
    for st in [stage] if stage else store.stages():
        latest = store.latest_name(st)
        intact, broken = [], []
        for art, why in store.scan(st, deep=check):
            (intact if why is None else broken).append((art, why))
        for art, _ in sorted(intact, key=lambda x: x[0].manifest["created_at"]):
            mark = "*" if latest == art.version else " "
            rows = " ".join(f"{k.removesuffix('.parquet')}={v}" for k, v in art.rows.items())
            typer.echo(f"{mark} {st:<12} {art.version}  {art.manifest['created_at']}  {rows}")
            files += len(art.manifest["files"])
        for art, why in broken:
            name = getattr(art, "version", None) or art.name
            typer.echo(f"! {st:<12} {name}  DAMAGED{' (latest)' if latest == name else ''}: {why}")
        versions += len(intact) + len(broken)
        damaged += len(broken)
    if check:
        typer.echo(f"checked {versions} version(s): {files} file(s) match their manifests; {damaged} damaged")
    if damaged and check:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
