"""Two-stage training on a 2-layer Llama (and a few steps of the real SmolLM2): what each stage changes,
validation loss, the artifact, exact resume after SIGKILL under the real `accelerate launch`, failures."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from elm import vectors as vec
from elm.artifacts import ArtifactStore
from elm.model.elm import ELM
from elm.synth.config import SynthesisConfig
from elm.synth.stage import synthesize
from elm.train.checkpoints import list_checkpoints, read_checkpoint
from elm.train.config import CheckpointError, StageConfig, TrainConfig, TrainingError
from elm.train.data import batch_indices, load_data, row_vectors
from elm.train.loop import CHECKPOINTS, KILL_ENV, fit
from elm.train.stage import train

SMALL = SynthesisConfig(teacher="template", train_movies=10, heldout_movies=2, train_users=3, heldout_users=1,
                        tasks_per_movie=2, chunk_size=64)


def tiny_config(lm_dir: Path, **kw) -> TrainConfig:
    """Three stage-1 and four stage-2 steps of batch 2 x 64 tokens, a checkpoint every 2 steps."""
    base = dict(base_model=str(lm_dir), max_length=64, eval_every=2, eval_examples=4, checkpoint_every=2,
                stage1=StageConfig(steps=3, lr=3e-3, batch_size=2), stage2=StageConfig(steps=4, lr=1e-3, batch_size=2))
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def synth(small_embeddings, tmp_path_factory):
    """A small template-teacher synthesize artifact over the session's real ml-latest-small embeddings."""
    _, ingest_art, arts = small_embeddings
    store = ArtifactStore(tmp_path_factory.mktemp("train-synth"))
    art, _ = synthesize({"ingest": ingest_art, **arts}, SMALL, store)
    return {"synthesize": art, "semantic": arts["semantic"], "behavioral": arts["behavioral"]}


@pytest.fixture(scope="module")
def trained(synth, tiny_lm_dir, tmp_path_factory):
    """One uninterrupted run through `accelerate launch`: (store, artifact, config)."""
    store = ArtifactStore(tmp_path_factory.mktemp("train-store"))
    cfg = tiny_config(tiny_lm_dir)
    art, hit = train(synth, cfg, store)
    assert not hit
    return store, art, cfg


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {f"adapters.{k}": v for k, v in load_file(folder / "adapters.safetensors").items()}
    if (folder / "base" / "model.safetensors").exists():
        out |= {f"lm.{k}": v for k, v in load_file(folder / "base" / "model.safetensors").items()}
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# ---- config and data -------------------------------------------------------------------------------

def test_config_validates_and_round_trips(tmp_path):
    cfg = TrainConfig(movie_space="behavioral", stage2=StageConfig(steps=5, lr=1e-4, lora=True, target_modules=["q_proj"]))
    assert TrainConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    assert json.loads((tmp_path / "c.json").read_text())["stage2"]["target_modules"] == ["q_proj"]
    assert TrainConfig().stage1.lr == 3e-3 and TrainConfig().adapter["soft_tokens"] == 8
    for bad, match in [(dict(movie_space="text"), "movie_space"), (dict(mixed_precision="fp8"), "mixed_precision"),
                       (dict(stage1=StageConfig(steps=1, lr=1e-3, lora=True)), "stage 1 trains the adapters only"),
                       (dict(adapter={"depth": 0}), "depth"), (dict(adapter={"in_dim": 3}), "adapter"),
                       (dict(max_length=4), "max_length"), (dict(eval_every=-1), "eval_every")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"steps": 3})
    with pytest.raises(ValueError, match="lr"):
        StageConfig(steps=1, lr=0)


def test_batches_are_a_pure_function_of_the_step_and_cover_each_epoch():
    n, b = 10, 4
    first = [batch_indices(n, b, seed=0, stage=1, micro_step=k) for k in range(5)]  # 20 rows: two epochs
    assert all(np.array_equal(x, batch_indices(n, b, 0, 1, k)) for k, x in enumerate(first))
    stream = np.concatenate(first)
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])  # every epoch is a new permutation
    assert not np.array_equal(first[0], batch_indices(n, b, 0, 2, 0))  # and every stage
    shards = [batch_indices(n, b // 2, 0, 1, 3, rank=r, world=2) for r in (0, 1)]
    assert sorted(np.concatenate(shards)) == sorted(batch_indices(n, b, 0, 1, 3))  # two processes share one batch


def test_length_grouped_batches_pad_less_and_keep_each_windows_rows():
    n, b, group = 200, 8, 10
    lengths = np.random.default_rng(1).integers(60, 160, n)

    def batches(g):
        return [batch_indices(n, b, 0, 2, k, lengths=lengths, group=g) for k in range(2 * group)]

    def padded(bs):  # what a batch costs: every row padded to the batch's longest
        return sum(len(x) * lengths[x].max() for x in bs)

    plain, grouped = batches(1), batches(group)
    assert all(np.array_equal(x, batch_indices(n, b, 0, 2, k)) for k, x in enumerate(plain))  # 1: plain batches
    assert padded(grouped) < 0.9 * padded(plain)
    for w in (0, 1):  # a window of `group` batches holds the same rows, grouped or not
        window = slice(w * group, (w + 1) * group)
        assert sorted(np.concatenate(grouped[window])) == sorted(np.concatenate(plain[window]))
    assert all(np.array_equal(x, batch_indices(n, b, 0, 2, k, lengths=lengths, group=group))
               for k, x in enumerate(grouped))  # still a pure function of the step: resume is exact
    # batches are taken in a shuffled order, not shortest first
    means = [lengths[x].mean() for x in grouped[:group]]
    assert means != sorted(means)
    shards = [batch_indices(n, b // 2, 0, 2, 3, rank=r, world=2, lengths=lengths, group=group) for r in (0, 1)]
    assert sorted(np.concatenate(shards)) == sorted(grouped[3])


def test_rows_fill_slots_in_order_and_rows_without_vectors_are_dropped():
    movies = vec.Vectors("movieId", np.array([1, 2, 3]), np.arange(12, dtype=np.float32).reshape(3, 4))
    users = vec.Vectors("userId", np.array([7]), np.ones((1, 2), dtype=np.float32))
    rows = pd.DataFrame({"kind": ["movie", "movie", "user", "movie"], "entity_id": [2, 1, 7, 9],
                         "partner_id": pd.array([3, None, None, None], dtype="Int64"),
                         "task": ["interpolation", "summary", "user_profile", "summary"]})
    pairs, ok = row_vectors(rows, {"movie": ("semantic_movies", movies), "user": ("behavioral_users", users)})
    assert ok.tolist() == [True, True, True, False]  # movie 9 has no vector in this space
    (s0, v0), (s1, v1) = pairs[0]
    assert s0 == s1 == "semantic_movies" and v0.tolist() == movies.get([2])[0].tolist()  # m0 = entity
    assert v1.tolist() == movies.get([3])[0].tolist()  # m1 = partner
    assert pairs[2][0][0] == "behavioral_users"


def test_load_data_uses_train_rows_and_a_fixed_heldout_subset(synth, tiny_lm_dir):
    cfg = tiny_config(tiny_lm_dir, eval_examples=5)
    data = load_data(cfg, synth)
    ex = pd.read_parquet(synth["synthesize"].file("examples.parquet"))
    assert len(data.train) == (ex.split == "train").sum() and len(data.val) == 5
    heldout_targets = set(ex[ex.split == "heldout"].target)
    assert all(e.target in heldout_targets for e in data.val)
    assert [e.target for e in data.val] == [e.target for e in load_data(cfg, synth).val]
    assert [s.name for s in data.spaces] == ["semantic_movies", "behavioral_users"]
    assert data.spaces[0].source == f"semantic/{synth['semantic'].version}"
    beh = load_data(replace(cfg, movie_space="behavioral"), synth)
    assert beh.spaces[0].name == "behavioral_movies" and beh.counts["dropped"] == {"train": 0, "heldout": 0}


# ---- what each stage trains (in process) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def stage1_only(synth, tiny_lm_dir, tmp_path_factory):
    cfg = tiny_config(tiny_lm_dir, stage2=StageConfig(steps=0, lr=1e-3))
    work = tmp_path_factory.mktemp("stage1-only")
    data = load_data(cfg, synth)
    return cfg, data, work, fit(cfg, data, work)


def test_stage1_changes_only_the_adapters(stage1_only, tiny_lm_dir):
    cfg, data, work, summary = stage1_only
    torch.manual_seed(cfg.seed)  # fit builds its ELM right after this seed: the same initial adapters
    fresh = ELM.from_base(cfg.elm_config(data.spaces), samples=data.samples)
    init = {f"adapters.{k}": v for k, v in fresh.adapters.state_dict().items()}
    after = weights(work / "elm")
    # Every movie batch holds movie slots; user rows are few, so a 3-step run may not meet one.
    movie = [k for k in init if k.startswith("adapters.semantic_movies.")]
    assert movie and all(not torch.equal(init[k], after[k]) for k in movie), "the adapter learns in stage 1"
    base = load_file(tiny_lm_dir / "model.safetensors")
    assert_same({f"lm.{k}": v for k, v in base.items()}, {k: v for k, v in after.items() if k.startswith("lm.")})
    assert_same(weights(work / "stage1"), {k: v for k, v in after.items() if k.startswith("adapters.")})
    ckpt = list_checkpoints(work / CHECKPOINTS)[-1]
    assert all(k.startswith("adapters.") for k in load_file(ckpt / "model.safetensors"))  # only they were trainable
    v = summary["val_loss"]
    assert math.isfinite(v["untrained"]) and v["after_stage1"] < v["untrained"] and v["after_stage2"] == v["after_stage1"]


def test_checkpoint_errors_are_clear(stage1_only, tmp_path):
    cfg, data, work, _ = stage1_only
    with pytest.raises(TrainingError, match="pass --resume"):
        fit(cfg, data, work)  # a finished run's checkpoints are not silently overwritten
    copy = tmp_path / "w"
    shutil.copytree(work / CHECKPOINTS, copy / CHECKPOINTS)
    (copy / CHECKPOINTS / ".tmp-stage9-step000001").mkdir()  # a half-written checkpoint is not a checkpoint
    newest = list_checkpoints(copy / CHECKPOINTS)[-1]
    assert newest.name == "stage1-step000003" and read_checkpoint(newest)["step"] == 3
    blob = bytearray((newest / "model.safetensors").read_bytes())
    blob[-5] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"stage1-step000003 is corrupt: model.safetensors"):
        fit(cfg, data, copy, resume=True)
    (newest / "state.json").unlink()
    with pytest.raises(CheckpointError, match="partial or corrupt"):
        fit(cfg, data, copy, resume=True)
    (newest / "state.json").write_text(json.dumps({"files": {"optimizer.pt": "0" * 64}}))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        read_checkpoint(newest)


# ---- the stage through `accelerate launch` ------------------------------------------------------------

def test_trained_artifact_layout_and_what_stage2_changes(trained, tiny_lm_dir, synth):
    store, art, cfg = trained
    names = {f["name"] for f in art.manifest["files"]}
    assert {"elm/adapters.safetensors", "elm/base/model.safetensors", "elm/elm_config.json",
            "stage1/adapters.safetensors", "train_config.json", "curves.parquet", "curves.png", "summary.json"} <= names
    assert not any(n.startswith(CHECKPOINTS) for n in names)
    assert {Path(n).suffix for n in names} <= {".safetensors", ".json", ".parquet", ".png", ".jinja"}  # no pickles
    assert set(art.manifest["inputs"]) == {"synthesize", "semantic", "behavioral"}
    assert TrainConfig.load(art.file("train_config.json")) == cfg
    assert art.file("curves.png").read_bytes()[:4] == b"\x89PNG"

    s = art.summary
    assert set(s["val_loss"]) == {"untrained", "after_stage1", "after_stage2"}
    assert all(math.isfinite(x) for x in s["val_loss"].values())
    assert s["val_loss"]["after_stage2"] < s["val_loss"]["untrained"]
    assert s["stages"]["stage1"]["steps"] == 3 and s["stages"]["stage2"]["tokens_per_s"] > 0
    curves = pd.read_parquet(art.file("curves.parquet"))
    assert list(curves.columns) == ["stage", "step", "split", "loss", "lr", "tokens_per_s"]
    train_rows = curves[curves.split == "train"]
    assert train_rows.groupby("stage").step.apply(list).to_dict() == {1: [1, 2, 3], 2: [1, 2, 3, 4]}
    val = curves[curves.split == "val"]
    assert val[["stage", "step"]].values.tolist() == [[1, 0], [1, 2], [1, 3], [2, 2], [2, 4]]
    assert val.loss.iloc[0] == pytest.approx(s["val_loss"]["untrained"], abs=1e-4)

    after1, final = weights(art.path / "stage1"), weights(art.path / "elm")
    base = {f"lm.{k}": v for k, v in load_file(tiny_lm_dir / "model.safetensors").items()}
    assert all(not torch.equal(base[k], final[k]) for k in base), "stage 2 trains every LM tensor"
    movie = [k for k in after1 if k.startswith("adapters.semantic_movies.")]
    assert movie and all(not torch.equal(after1[k], final[k]) for k in movie), "and keeps training the adapter"
    elm = ELM.load(art.path / "elm")
    assert elm.config.spaces[0].name == "semantic_movies" and not elm.training

    again, hit = train(synth, cfg, store)
    assert hit and again.path == art.path


def test_kill_and_resume_ends_with_the_weights_of_an_uninterrupted_run(trained, synth, tmp_path):
    _, reference, cfg = trained
    store = ArtifactStore(tmp_path / "artifacts")
    work = store.root / "train" / f".work-{reference.version}"
    # SIGKILL after stage 1 step 3 (last checkpoint: step 2), then after stage 2 step 3 (last: step 2).
    for kill_at, newest in (("1:3", "stage1-step000002"), ("2:3", "stage2-step000002")):
        with pytest.raises(TrainingError, match="exited with status") as e:
            train(synth, cfg, store, env={KILL_ENV: kill_at})
        assert "SIGKILL" in str(e.value)  # the tail of the log
        assert store.latest("train") is None
        assert list_checkpoints(work / CHECKPOINTS)[-1].name == newest
        # The kill came after the step but before its checkpoint: resume must redo that step.
    art, hit = train(synth, cfg, store)
    assert not hit and art.version == reference.version
    assert_same(weights(reference.path / "elm"), weights(art.path / "elm"))
    assert_same(weights(reference.path / "stage1"), weights(art.path / "stage1"))
    assert art.summary["val_loss"] == reference.summary["val_loss"]
    a, b = (pd.read_parquet(x.file("curves.parquet")) for x in (reference, art))
    pd.testing.assert_frame_equal(a.drop(columns="tokens_per_s"), b.drop(columns="tokens_per_s"))
    assert not (art.path / CHECKPOINTS).exists()


def test_a_failing_launch_raises_with_the_tail_of_its_log(synth, tiny_lm_dir, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    cfg = tiny_config(tiny_lm_dir, max_length=16)  # every prompt is longer: the launched script fails
    with pytest.raises(TrainingError, match="exited with status") as e:
        train(synth, cfg, store)
    assert "over max_length 16" in str(e.value)
    assert store.latest("train") is None


# ---- the real base model ----------------------------------------------------------------------------

@pytest.mark.slow
def test_real_smollm2_trains_a_few_steps_and_loads_back(synth, smollm_dir, model_store, tmp_path):
    cfg = TrainConfig(base_model=str(smollm_dir), max_length=64, eval_every=0, eval_examples=4, checkpoint_every=0,
                      stage1=StageConfig(steps=2, lr=3e-3, batch_size=2),
                      stage2=StageConfig(steps=2, lr=1e-4, batch_size=2, lora=True, lora_r=4))
    data = load_data(cfg, synth)
    summary = fit(cfg, data, tmp_path, store=model_store)
    assert all(math.isfinite(v) for v in summary["val_loss"].values())
    elm = ELM.load(tmp_path / "elm")
    assert not any("lora" in k for k in elm.lm.state_dict())  # merged: a plain LM, loadable without peft
    base = load_file(smollm_dir / "model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(elm.lm.state_dict()[q], base[q])  # LoRA's update is in the merged weights
    batch = elm.collator()(data.val[:2])
    with torch.no_grad():
        assert math.isfinite(elm(**batch).loss.item())
