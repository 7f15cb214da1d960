import json

import pandas as pd
import pytest

from elm.artifacts import ArtifactError, compute_version


def _writer(calls, rows=3):
    def build(work):
        calls.append(work.version)
        pd.DataFrame({"x": range(rows)}).to_parquet(work.path / "t.parquet")
        work.summary["n"] = rows

    return build


def test_version_is_a_stable_hash_of_inputs_config_and_code():
    v = compute_version("s", {"a": "1"}, {"k": 1, "j": [1, 2]}, "1")
    assert v == compute_version("s", {"a": "1"}, {"j": [1, 2], "k": 1}, "1")  # key order does not matter
    assert v != compute_version("s", {"a": "2"}, {"k": 1, "j": [1, 2]}, "1")
    assert v != compute_version("s", {"a": "1"}, {"k": 2, "j": [1, 2]}, "1")
    assert v != compute_version("s", {"a": "1"}, {"k": 1, "j": [1, 2]}, "2")


def test_produce_writes_manifest_and_second_run_is_a_cache_hit(store, caplog):
    calls = []
    art, hit = store.produce("s", inputs={"up": "abc"}, config={"k": 1}, code_version="1", build=_writer(calls))
    assert not hit and len(calls) == 1
    m = json.loads((art.path / "manifest.json").read_text())
    assert m["stage"] == "s" and m["inputs"] == {"up": "abc"} and m["config"] == {"k": 1}
    assert m["files"][0]["name"] == "t.parquet" and m["files"][0]["rows"] == 3 and len(m["files"][0]["sha256"]) == 64
    assert m["summary"] == {"n": 3} and m["created_at"]
    assert store.latest("s").version == art.version
    with caplog.at_level("INFO", logger="elm"):
        again, hit = store.produce("s", inputs={"up": "abc"}, config={"k": 1}, code_version="1", build=_writer(calls))
    assert hit and len(calls) == 1 and again.version == art.version
    assert "cache hit" in caplog.text


def test_failed_build_publishes_nothing_and_keeps_latest(store):
    good, _ = store.produce("s", inputs={}, config={"k": 1}, code_version="1", build=_writer([]))

    def crash(work):
        (work.path / "half.parquet").write_bytes(b"partial")
        raise KeyboardInterrupt  # an interrupted run, not just an exception

    with pytest.raises(KeyboardInterrupt):
        store.produce("s", inputs={}, config={"k": 2}, code_version="1", build=crash)
    assert [a.version for a in store.versions("s")] == [good.version]
    assert store.latest("s").version == good.version
    assert not any(p.name.startswith(".work-") for p in (store.root / "s").iterdir())


def test_resumable_work_is_handed_back(store):
    seen = []

    def first(work):
        (work.path / "chunk-0.parquet").write_bytes(b"x")
        raise RuntimeError("killed")

    def second(work):
        seen.extend(sorted(p.name for p in work.path.iterdir()))
        pd.DataFrame({"x": [1]}).to_parquet(work.path / "t.parquet")
        (work.path / "chunk-0.parquet").unlink()

    with pytest.raises(RuntimeError):
        store.produce("s", inputs={}, config={}, code_version="1", build=first, resumable=True)
    store.produce("s", inputs={}, config={}, code_version="1", build=second, resumable=True)
    assert seen == ["chunk-0.parquet"]


def test_verify_detects_corruption_and_resolve_by_prefix(store):
    art, _ = store.produce("s", inputs={}, config={}, code_version="1", build=_writer([]))
    art.verify()
    assert store.resolve("s", art.version[:6]).version == art.version
    (art.path / "t.parquet").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        art.verify()
    with pytest.raises(ArtifactError, match="no 'other' artifact"):
        store.resolve("other")
