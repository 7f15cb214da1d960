"""Every stage checks what it reads against the manifest that published it: one flipped byte in an input
stops the stage with one line naming the file, the stage that made it and the command that rebuilds it,
instead of a new artifact built from the corrupt data under the id of a clean one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from elm.artifacts import ArtifactError, ArtifactStore
from elm.synth.stage import SynthesisConfig, synthesize

SMALL = SynthesisConfig(teacher="template", train_movies=6, heldout_movies=3, train_users=2, heldout_users=2,
                        tasks_per_movie=2, chunk_size=16)
STAGES = ("ingest", "splits", "semantic", "behavioral")


def flip(path: Path) -> None:
    """One bit in the middle of the file: same size, so only its hash tells."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.fixture
def copy(small_embeddings, tmp_path):
    """A private copy of the session's ingest and embedding artifacts: (store, {stage: artifact})."""
    store, ingest_art, arts = small_embeddings
    versions = {"ingest": ingest_art.version, **{k: a.version for k, a in arts.items()}}
    root = tmp_path / "artifacts"
    for stage in STAGES:
        shutil.copytree(store.root / stage / versions[stage], root / stage / versions[stage])
    s = ArtifactStore(root)
    return s, {k: s.get(k, v) for k, v in versions.items()}


@pytest.mark.parametrize("stage", ["semantic", "splits"])
def test_synthesize_refuses_a_changed_input(copy, stage):
    store, arts = copy
    flip(arts[stage].path / "movies.parquet")
    with pytest.raises(ArtifactError) as e:
        synthesize(arts, SMALL, store)
    msg = str(e.value)
    assert f"{stage}/{arts[stage].version}/movies.parquet does not match its manifest sha256" in msg
    assert f"made by stage '{stage}'" in msg and "run `elm embeddings` with the options that made it again" in msg
    assert "\n" not in msg
    assert store.versions("synthesize") == []  # nothing published from it


def test_training_data_refuses_changed_examples(copy):
    from elm.train.config import TrainConfig
    from elm.train.data import input_artifacts, load_data

    store, arts = copy
    syn, _ = synthesize(arts, SMALL, store)
    load_data(TrainConfig(), input_artifacts(syn))  # intact: reads
    flip(syn.path / "examples.parquet")
    with pytest.raises(ArtifactError, match=r"synthesize/\w+/examples.parquet does not match its manifest sha256.*"
                                            r"made by stage 'synthesize'.*`elm synthesize`"):
        load_data(TrainConfig(), input_artifacts(syn))


def test_a_changed_elm_in_a_train_artifact_is_refused(copy, tiny_lm_dir):
    from elm.model.config import ELMConfig, SpaceSpec
    from elm.model.elm import ELM, ELMLoadError
    from elm.serve.loading import load_elm, resolve_elm_folder

    store, arts = copy
    sem = arts["semantic"]
    torch.manual_seed(0)
    elm = ELM.from_base(ELMConfig(spaces=(SpaceSpec("semantic_movies", "movie", sem.summary["dim"],
                                                    f"semantic/{sem.version}"),), base_model=str(tiny_lm_dir)))
    art, _ = store.produce("train", inputs={"semantic": sem.version}, config={}, code_version="test",
                           build=lambda work: elm.save(work.path / "elm", include_base=False))
    load_elm(resolve_elm_folder(None, store), store)  # intact: loads
    flip(art.path / "elm" / "adapters.safetensors")
    for given in (None, f"train={art.version[:6]}", str(art.path / "elm"), str(art.path)):
        with pytest.raises(ELMLoadError, match=r"elm/adapters.safetensors does not match its manifest sha256.*"
                                               r"made by stage 'train'.*`elm train`"):
            load_elm(resolve_elm_folder(given, store), store)
