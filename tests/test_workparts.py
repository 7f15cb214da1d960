"""Resumable work in parts (elm/workparts.py): the one rule synthesis chunks and evaluation parts share."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from elm import workparts


def frame(name) -> pd.DataFrame:
    return pd.DataFrame({"part": [str(name)] * 2, "x": [1, 2]})


def test_names_become_file_names():
    assert workparts.part_path("f", 12).name == "000012.parquet"
    assert workparts.part_path("f", "cav/genre:Horror").name == "cav__genre_Horror.parquet"


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = workparts.write_part(frame("a"), tmp_path / "parts", "a")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["a.parquet"]
    assert pd.read_parquet(path).equals(frame("a"))


def test_a_resumed_run_computes_only_the_missing_parts(tmp_path):
    names = ["generalisation/heldout", "baseline", 3]
    workparts.write_part(frame("baseline"), tmp_path, "baseline")  # left by an interrupted run
    todo = workparts.missing(names, tmp_path, "test")
    assert todo == ["generalisation/heldout", 3]
    computed = []
    workparts.run_here(todo, tmp_path, lambda n: computed.append(n) or frame(n), "test")
    assert computed == todo
    got = workparts.read_parts(names, tmp_path, "test")
    assert got["part"].tolist() == ["generalisation/heldout"] * 2 + ["baseline"] * 2 + ["3"] * 2  # in name order


def test_a_failing_part_keeps_the_finished_ones(tmp_path):
    def compute(n):
        if n == "b":
            raise RuntimeError("killed")
        return frame(n)

    with pytest.raises(RuntimeError, match="killed"):
        workparts.run_here(["a", "b", "c"], tmp_path, compute, "test")
    assert workparts.missing(["a", "b", "c"], tmp_path, "test") == ["b", "c"]


def test_reading_names_the_parts_that_were_not_written(tmp_path):
    workparts.write_part(frame("a"), tmp_path, "a")
    with pytest.raises(workparts.MissingPartsError, match=r"parts \['b'\] were not written"):
        workparts.read_parts(["a", "b"], tmp_path, "test")


def test_empty_parts_give_the_columns_asked_for(tmp_path):
    workparts.write_part(pd.DataFrame({"x": []}), tmp_path, "a")
    assert workparts.read_parts(["a"], tmp_path, "test", columns=["x", "y"]).columns.tolist() == ["x", "y"]


def test_remove_deletes_the_folder(tmp_path):
    workparts.write_part(frame("a"), tmp_path / "parts", "a")
    workparts.remove(tmp_path / "parts")
    assert not (tmp_path / "parts").exists()


def test_thread_cached_loads_once_per_job_and_thread():
    loads = []

    def load(tag):
        return lambda: loads.append(tag) or object()

    a1 = workparts.thread_cached(("job", 1), load("a"))
    assert workparts.thread_cached(("job", 1), load("a")) is a1 and loads == ["a"]
    b = workparts.thread_cached(("job", 2), load("b"))
    assert b is not a1 and loads == ["a", "b"]
    other = []
    t = threading.Thread(target=lambda: other.append(workparts.thread_cached(("job", 2), load("c"))))
    t.start()
    t.join()
    assert other[0] is not b and loads == ["a", "b", "c"]  # another thread gets its own
