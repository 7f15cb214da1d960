import json
import subprocess
import sys
from pathlib import Path

import pytest


def _elm(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "elm.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_help_explains_commands():
    out = _elm("--help").stdout
    assert "ingest" in out and "sql" in out and "artifacts" in out
    out = _elm("ingest", "--help").stdout
    assert "--dataset" in out and "--source" in out and "ELM_MOVIELENS_DIR" in out


def test_cli_ingest_then_cache_hit_then_sql(tmp_path):
    art = str(tmp_path / "a")
    first = _elm("ingest", "--artifacts", art)
    assert first.returncode == 0, first.stderr
    assert "ratings 100836" in first.stdout and "movies 9742" in first.stdout and "tags 3683" in first.stdout
    second = _elm("ingest", "--artifacts", art)
    assert second.stdout.startswith("cache hit")
    q = _elm("sql", "select count(*) as n from ingest_tags", "--artifacts", art)
    assert q.returncode == 0 and "3683" in q.stdout
    listing = _elm("artifacts", "--artifacts", art)
    assert listing.stdout.startswith("* ingest")


def test_cli_bad_source_is_one_clear_line(tmp_path):
    r = _elm("ingest", "--source", str(tmp_path / "missing"), "--artifacts", str(tmp_path / "a"))
    assert r.returncode == 1
    assert "SourceError" in r.stderr and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_synthesize_prints_the_reference_table(small_embeddings):
    store, _, _ = small_embeddings
    args = ["synthesize", "--teacher", "template", "--train-movies", "4", "--heldout-movies", "3",
            "--tasks", "summary,pitch", "--artifacts", str(store.root)]
    r = _elm(*args)
    assert r.returncode == 0, r.stderr
    assert "reference SC on held-out movies (template)" in r.stdout and "mean over tasks" in r.stdout
    assert "[summary]" in r.stdout and "[pitch]" in r.stdout
    assert _elm(*args).stdout.startswith("cache hit")
    bad = _elm("synthesize", "--teacher", "template", "--tasks", "summary,sumary", "--artifacts", str(store.root))
    assert bad.returncode == 1 and "unknown task(s) ['sumary']" in bad.stderr and "Traceback" not in bad.stderr
    down = _elm("synthesize", "--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1", "--api-model", "m",
                "--train-movies", "1", "--heldout-movies", "0", "--train-users", "0", "--heldout-users", "0",
                "--tasks", "summary", "--retries", "0", "--artifacts", str(store.root))
    assert down.returncode == 1 and "could not reach http://127.0.0.1:9/v1" in " ".join(down.stderr.split())


@pytest.mark.slow
def test_elm_flow_runs_the_chain_through_prefect(prefect_harness, small_ingest, tiny_lm_dir):
    """The `elm` flow on the session's store: it builds (or finds) every stage, then a re-run is all cache hits."""
    from elm.evaluate.config import EvalConfig
    from elm.synth.config import SynthesisConfig
    from elm.train.config import StageConfig, TrainConfig
    from flows.pipeline import elm_flow
    from tests.test_embeddings import FAST

    store, ingest_art = small_ingest
    synthesis = SynthesisConfig(teacher="template", train_movies=6, heldout_movies=3, train_users=2, heldout_users=2)
    training = TrainConfig(base_model=str(tiny_lm_dir), max_length=96, eval_every=0, eval_examples=4,
                           checkpoint_every=0, stage1=StageConfig(steps=2, lr=3e-3, batch_size=2),
                           stage2=StageConfig(steps=1, lr=1e-4, batch_size=2))
    evaluation = EvalConfig(heldout_per_task=2, train_per_task=1, tasks=("summary", "similarities", "user_profile"),
                            max_new_tokens=8, movie_pairs=1, user_pairs=1, alphas=(0.0, 1.0),
                            cav_attributes=("genre:Comedy",), cav_alphas=(0.0, 2.0), cav_movies=1, cav_users=1,
                            second_encoder=None)  # its real path is tested in test_evaluation.py
    kw = dict(artifacts_dir=str(store.root), data_dir=str(store.root / "data"), wals=FAST.wals, synthesis=synthesis,
              training=training, evaluation=evaluation)
    versions = elm_flow(**kw)
    assert versions["ingest"] == ingest_art.version
    assert set(versions) == {"ingest", "splits", "behavioral", "semantic", "synthesize", "train", "evaluate", "report"}
    assert store.resolve("evaluate", versions["evaluate"]).manifest["inputs"]["train"] == versions["train"]
    assert (store.resolve("report", versions["report"]).path / "report.html").exists()
    assert store.resolve("synthesize", versions["synthesize"]).summary["teacher"] == "template"
    assert (store.resolve("train", versions["train"]).path / "elm" / "elm_config.json").exists()
    for stage, version in versions.items():
        assert store.resolve(stage, version).rows  # published, with row counts
    counts = {stage: len(store.versions(stage)) for stage in versions}
    assert elm_flow(**kw) == versions
    assert {stage: len(store.versions(stage)) for stage in versions} == counts


def test_pipeline_config_file_is_checked_before_any_stage_runs(tmp_path):
    """`python -m flows.pipeline --config` (the small run of docker/README.md): the committed small config is
    valid, and a bad file fails at once, naming the field or the problem."""
    from prefect.exceptions import ParameterTypeError

    from flows.pipeline import read_config

    small = read_config(str(Path(__file__).resolve().parents[1] / "configs" / "flows" / "small.json"))
    assert small["training"]["stage2"]["steps"] > 0 and small["evaluation"]["second_encoder"] is None
    assert read_config(None) == {}
    # the full-scale recipe (README, "Going big") is a valid set of flow parameters, not just prose
    big = read_config(str(Path(__file__).resolve().parents[1] / "configs" / "flows" / "ml-25m-gpu.json"))
    assert big["dataset"] == "ml-25m" and big["synthesis"]["teacher"] == "openai"
    assert big["training"]["mixed_precision"] == "bf16" and big["training"]["accelerate_config"] == "gpu"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": {"stage2": {"steps": 1}}}))
    with pytest.raises(ParameterTypeError, match="training.stage2.lr"):
        read_config(str(bad))
    bad.write_text("[1]")
    with pytest.raises(SystemExit, match="JSON object"):
        read_config(str(bad))
    with pytest.raises(SystemExit, match="missing.json"):
        read_config(str(tmp_path / "missing.json"))
