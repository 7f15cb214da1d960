"""Scale-out: the evaluate flow's parts on a task runner chosen by a parameter, here a local Dask cluster of two
worker processes, give the very artifact that running them in-process gives."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from elm.evaluate.config import EvalConfig
from elm.evaluate.parts import part_names
from elm.evaluate.stage import evaluate
from tasks.runners import make_task_runner
from tests.test_evaluation import GEN_FILES, SMALL, world  # noqa: F401 - world is a fixture used here

DASKED = EvalConfig(**{**SMALL.to_dict(), "seed": 3, "second_encoder": None})
"""SMALL with another seed: another version, so nothing is a cache hit of tests/test_evaluation.py."""
ROW_KEY = ["experiment", "system", "split", "task", "entity_kind", "entity_id", "partner_id", "attribute", "alpha",
           "space"]


@pytest.fixture(scope="module")
def dask_cluster():
    """A local cluster of 2 single-threaded worker processes, and a client of our own to watch it."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c, set_as_default=False) as client:
        yield c, client


TABLES = ("generations", "scores", "interpolation", "cav", "cav_classifiers")


def _tables(art) -> dict[str, pd.DataFrame]:
    out = {t: pd.read_parquet(art.file(f"{t}.parquet")) for t in TABLES}
    out["generations"] = out["generations"].sort_values(ROW_KEY, na_position="first").reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def reference(world):
    """DASKED evaluated in this process, one part after another: (version, its tables)."""
    store, arts = world
    art, _ = evaluate(arts, DASKED, store)
    return art.version, _tables(art)


def _flow_again(store, arts, version, **runner):
    """Delete the published version and evaluate it again through the flow on another task runner."""
    from flows.evaluate import evaluate_flow

    shutil.rmtree(store.resolve("evaluate", version).path)
    again = evaluate_flow(arts["train"].version, DASKED, str(store.root), **runner)
    assert again == version
    art = store.resolve("evaluate", version)
    assert {f["name"] for f in art.manifest["files"]} == GEN_FILES and art.manifest["config"]["seed"] == 3
    return art


def _assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    """Same rows, texts and scores (texts exactly; floats to 1e-5 relative or 1e-6 absolute: a worker process
    encodes with another thread count, and a score near 0, such as an SC of 0.0008, differs in its last bits)."""
    for t in TABLES:
        pd.testing.assert_frame_equal(got[t], want[t], obj=t, atol=1e-6)


@pytest.mark.slow
def test_parts_fan_out_to_dask_workers_and_give_the_in_process_artifact(prefect_harness, world, reference,
                                                                       dask_cluster):
    from distributed import get_task_stream

    store, arts = world
    version, want = reference
    cluster, client = dask_cluster
    with get_task_stream(client) as stream:
        art = _flow_again(store, arts, version, task_runner="dask", dask_address=cluster.scheduler_address)
    _assert_same_tables(_tables(art), want)
    # every part ran once, as a task on a worker process of the cluster, and both workers took some
    worker_pids = client.run(os.getpid)
    assert len(stream.data) == len(part_names(DASKED, ["genre:Comedy"])) == 6
    assert {t["worker"] for t in stream.data} == set(worker_pids) and os.getpid() not in worker_pids.values()


@pytest.mark.slow
def test_parts_on_two_threads_give_the_in_process_artifact(prefect_harness, world, reference):
    store, arts = world
    version, want = reference
    art = _flow_again(store, arts, version, task_runner="threads", workers=2)
    got = _tables(art)
    # Two models generating at once in one process share torch's intra-op thread pool, so matmul reductions
    # may split differently and a random tiny LM's greedy text can flip on a near-tie (seen: 1 run in 3).
    # The rows, the teacher texts and their scores must still be the very same.
    g, w = got["generations"], want["generations"]
    pd.testing.assert_frame_equal(g[ROW_KEY], w[ROW_KEY])
    truth = (w["system"] == "truth").to_numpy()
    pd.testing.assert_frame_equal(g[truth], w[truth])
    # two threads loaded models at once: transformers' process-global init hooks must not have leaked
    # (they did before elm.model.base_lm.LOAD_LOCK: every later model came out on the meta device)
    import torch

    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"


def test_make_task_runner_knows_threads_and_dask():
    from prefect.task_runners import ThreadPoolTaskRunner

    threads = make_task_runner("threads", workers=3)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    with pytest.raises(ValueError, match=r"unknown task runner 'ray'; known: threads, dask"):
        make_task_runner("ray")
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        make_task_runner("threads", workers=0)
    pytest.importorskip("prefect_dask")
    local = make_task_runner("dask", workers=2)
    assert local.cluster_kwargs == {"n_workers": 2, "threads_per_worker": 1, "processes": True}
    joined = make_task_runner("dask", address="tcp://10.0.0.5:8786")
    assert joined.address == "tcp://10.0.0.5:8786" and not joined.cluster_kwargs


@pytest.mark.slow
def test_synthesis_chunks_fan_out_to_dask_workers_and_give_the_in_process_artifact(prefect_harness, small_embeddings,
                                                                                  dask_cluster):
    from distributed import get_task_stream

    from elm.synth.config import SynthesisConfig
    from elm.synth.stage import synthesize
    from flows.synthesize import synthesize_flow

    store, ingest_art, arts = small_embeddings
    arts = dict(arts, ingest=ingest_art)
    cfg = SynthesisConfig(teacher="template", train_movies=12, heldout_movies=2, train_users=3, heldout_users=2,
                          tasks_per_movie=2, chunk_size=8, seed=5)
    want, _ = synthesize(arts, cfg, store)  # here, one chunk after another
    examples = pd.read_parquet(want.file("examples.parquet"))
    assert len(examples) > 3 * cfg.chunk_size  # several chunks to spread
    shutil.rmtree(want.path)
    cluster, client = dask_cluster
    with get_task_stream(client) as stream:
        version = synthesize_flow({k: a.version for k, a in arts.items()}, cfg, str(store.root), task_runner="dask",
                                  dask_address=cluster.scheduler_address)
    assert version == want.version
    got = store.resolve("synthesize", version)
    pd.testing.assert_frame_equal(pd.read_parquet(got.file("examples.parquet")), examples)
    chunks = (len(examples) + len(pd.read_parquet(got.file("rejected.parquet"))) + cfg.chunk_size - 1) // cfg.chunk_size
    assert len(stream.data) == chunks and len({t["worker"] for t in stream.data}) == 2
