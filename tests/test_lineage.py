"""Stage contracts and lineage (elm/lineage.py): what a stage declares is what its manifest records, and a
stage's indirect inputs are found by walking manifests."""

from __future__ import annotations

import pandas as pd
import pytest

from elm.artifacts import ArtifactError
from elm.lineage import StageSpec, check_pins, publish, read_tables, resolve_lineage

VECTORS = StageSpec("vectors", inputs=(), files=("t.parquet",), code_version="1")
DATA = StageSpec("data", inputs=("vectors",), files=("t.parquet",), code_version="1")
MODEL = StageSpec("model", inputs=("data", "vectors"), files=("t.parquet",), code_version="1")


def make(store, spec, arts, value):
    def build(work):
        pd.DataFrame({"value": [value]}).to_parquet(work.path / "t.parquet")

    return publish(store, spec, arts, {"value": value}, build)[0]


@pytest.fixture
def chain(store):
    v1 = make(store, VECTORS, {}, 1)
    v2 = make(store, VECTORS, {}, 2)
    d = make(store, DATA, {"vectors": v1}, 10)
    m = make(store, MODEL, {"data": d, "vectors": v1}, 100)
    return store, v1, v2, d, m


def test_publish_records_exactly_the_declared_inputs(chain):
    store, v1, _, d, m = chain
    assert m.manifest["inputs"] == {"data": d.version, "vectors": v1.version}
    assert m.manifest["code_version"] == "1"
    with pytest.raises(ArtifactError, match=r"model needs the artifacts \['vectors'\]"):
        make(store, MODEL, {"data": d}, 101)


def test_lineage_walks_manifests(chain):
    _, v1, _, d, m = chain
    got = resolve_lineage(m, ["vectors", "data"])
    assert {k: a.version for k, a in got.items()} == {"model": m.version, "vectors": v1.version, "data": d.version}


def test_a_pinned_version_wins_and_its_own_inputs_are_followed(chain):
    store, v1, v2, d, m = chain
    d2 = make(store, DATA, {"vectors": v2}, 20)
    got = resolve_lineage(m, ["data"], pinned={"data": d2.version})
    assert got["data"].version == d2.version
    # vectors: the model names v1 directly, and the nearest artifact that read it wins
    assert resolve_lineage(m, ["vectors"], pinned={"data": d2.version})["vectors"].version == v1.version
    assert resolve_lineage(d2, ["vectors"])["vectors"].version == v2.version


def test_a_stage_outside_the_lineage_is_named(chain):
    _, _, _, d, _ = chain
    with pytest.raises(ArtifactError, match=r"was not made from any \['model'\]"):
        resolve_lineage(d, ["model"])


def test_pins_must_name_an_input():
    check_pins(MODEL, {"data": "abc"})
    with pytest.raises(ValueError, match=r"model reads data, vectors; it cannot take a version of \['ingest'\]"):
        check_pins(MODEL, {"ingest": "abc"})


def test_read_tables_verifies_before_reading(chain):
    _, v1, _, _, _ = chain
    assert read_tables(v1, ("t",))["t"]["value"].tolist() == [1]
    assert read_tables(v1, ("t", "genome"), optional=("genome",)).keys() == {"t"}
    with pytest.raises(ArtifactError, match="has no table 'genome'"):
        read_tables(v1, ("genome",))
    path = v1.path / "t.parquet"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ArtifactError, match="does not match its manifest sha256"):
        read_tables(v1, ("t",))


def test_newer_than_lineage_names_what_landed_after_a_model(store):
    """What a re-evaluation reports as waiting for a training: newer versions than the model's lineage."""
    import time

    from elm.lineage import newer_than_lineage

    v1 = make(store, VECTORS, {}, 1)
    m = make(store, MODEL, {"data": make(store, DATA, {"vectors": v1}, 10), "vectors": v1}, 100)
    assert newer_than_lineage(store, m, ("vectors", "data")) == {}
    time.sleep(1.05)  # created_at has one-second resolution
    v2 = make(store, VECTORS, {}, 2)
    assert newer_than_lineage(store, m, ("vectors", "data")) == {"vectors": v2.version}
