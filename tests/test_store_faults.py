"""A damaged or read-only store, a full disk, file modes: the store reports damage instead of crashing,
rebuilds a damaged version on the next run, serves cache hits without writing, and leaves nothing behind
when a write fails."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from elm.artifacts import ArtifactError, ArtifactStore
from elm.cli import app


def _writer(calls: list, rows: int = 3):
    def build(work):
        calls.append(work.version)
        pd.DataFrame({"x": range(rows)}).to_parquet(work.path / "t.parquet")

    return build


def _produce(store, calls, **kw):
    return store.produce("s", inputs={}, config={"k": 1}, code_version="1", build=_writer(calls), **kw)


def _litter(store) -> list[str]:
    return sorted(p.name for p in (store.root / "s").iterdir() if p.name.startswith("."))


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    d = tempfile.mkdtemp()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], check=True)
        return ok
    finally:
        os.rmdir(d)


MOUNTS = _can_mount()


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` read-only for this process: a read-only bind mount as root (root ignores file modes), else
    modes without write bits."""
    if MOUNTS:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without mount: no way to make a folder read-only")
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if not p.is_symlink()}
    for p, m in modes.items():
        os.chmod(p, m & ~0o222)
    try:
        yield
    finally:
        for p, m in modes.items():
            os.chmod(p, m)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m"):
    if not MOUNTS:
        pytest.skip("needs root and mount for a small tmpfs (the monkeypatched disk-full test runs anywhere)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


# -- damaged versions ---------------------------------------------------------------------------------


def test_a_version_without_manifest_is_reported_and_rebuilt(store):
    calls = []
    art, _ = _produce(store, calls)
    (art.path / "manifest.json").unlink()
    assert store.versions("s") == [] and [p for p, _ in store.damaged("s")] == [art.path]
    out = _cli("artifacts", "--artifacts", str(store.root))
    assert out.exit_code == 0 and f"! s            {art.version}  DAMAGED (latest)" in out.output
    assert "no manifest.json" in out.output and "run the command that needed it again" in out.output
    again, hit = _produce(store, calls)
    assert not hit and len(calls) == 2 and again.version == art.version
    assert store.latest("s").version == art.version and store.damaged("s") == []
    assert _litter(store) == []  # no .work-, .lock- or .damaged- folder left


def test_an_unreadable_manifest_is_damaged_not_a_crash(store):
    calls = []
    art, _ = _produce(store, calls)
    other, _ = store.produce("t", inputs={}, config={}, code_version="1", build=_writer([]))
    (art.path / "manifest.json").write_text("{")
    out = _cli("artifacts", "--artifacts", str(store.root))
    assert out.exit_code == 0, out.output
    assert "DAMAGED (latest)" in out.output and "manifest.json is unreadable (JSONDecodeError" in out.output
    assert f"* t            {other.version}" in out.output  # the rest of the store is listed as usual
    out = _cli("sql", "--artifacts", str(store.root), "select stage, version from manifests")
    assert out.exit_code == 0, out.output
    assert other.version in out.output and art.version not in out.output.split("skipping damaged")[0]
    with pytest.raises(ArtifactError, match="manifest.json is unreadable"):
        store.resolve("s")
    _, hit = _produce(store, calls)
    assert not hit and store.resolve("s").version == art.version


def test_check_hashes_every_file_and_a_rerun_replaces_a_changed_one(store):
    calls = []
    art, _ = _produce(store, calls)
    out = _cli("artifacts", "--check", "--artifacts", str(store.root))
    assert out.exit_code == 0 and "checked 1 version(s): 1 file(s) match their manifests; 0 damaged" in out.output
    data = bytearray((art.path / "t.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: same size, so only hashing finds it
    (art.path / "t.parquet").write_bytes(bytes(data))
    assert "DAMAGED" not in _cli("artifacts", "--artifacts", str(store.root)).output
    out = _cli("artifacts", "--check", "--artifacts", str(store.root))
    assert out.exit_code == 1
    assert "t.parquet does not match its manifest sha256" in out.output and "1 damaged" in out.output
    with pytest.raises(ArtifactError, match=r"t.parquet does not match its manifest sha256.*made by stage 's'"):
        art.file("t.parquet")
    _, hit = _produce(store, calls)  # the cache hit checks the files and builds the version again
    assert not hit and len(calls) == 2
    art.file("t.parquet")
    assert _cli("artifacts", "--check", "--artifacts", str(store.root)).exit_code == 0


def test_a_missing_file_is_damage(store):
    art, _ = _produce(store, [])
    (art.path / "t.parquet").unlink()
    (why,) = [w for _, w in store.damaged("s")]
    assert "t.parquet is missing" in why and store.versions("s") == []


# -- writes ------------------------------------------------------------------------------------------


def test_cache_hit_on_a_read_only_store(store):
    calls = []
    art, _ = _produce(store, calls)
    with read_only(store.root):
        again, hit = _produce(store, calls)
        assert hit and again.version == art.version and len(calls) == 1
        assert _cli("artifacts", "--check", "--artifacts", str(store.root)).exit_code == 0


def test_cache_hit_of_ingest_on_a_read_only_store(small_ingest, tmp_path):
    from elm.data.ingest import IngestConfig, ingest

    src, art = small_ingest
    root = tmp_path / "ro"
    shutil.copytree(src.root / "ingest", root / "ingest", symlinks=True)
    with read_only(root):
        again, hit = ingest(IngestConfig(), ArtifactStore(root), tmp_path / "data")
    assert hit and again.version == art.version


def test_failed_build_leaves_no_work_folder_and_no_lock(store):
    def crash(work):
        (work.path / "half.parquet").write_bytes(b"partial")
        raise RuntimeError("bad input")

    with pytest.raises(RuntimeError):
        store.produce("s", inputs={}, config={}, code_version="1", build=crash)
    assert _litter(store) == []


def test_published_files_and_folders_are_readable_like_the_rest(store):
    def build(work):
        private = Path(tempfile.mkdtemp(dir=work.path))  # 0700, as tempfile makes them
        os.rename(private, work.path / "elm")
        fd = os.open(work.path / "elm" / "w.safetensors", os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"weights")
        os.close(fd)
        pd.DataFrame({"x": [1]}).to_parquet(work.path / "t.parquet")

    old = os.umask(0o022)
    try:
        art, _ = store.produce("s", inputs={}, config={}, code_version="1", build=build)
    finally:
        os.umask(old)
    modes = {p.relative_to(art.path).as_posix(): p.stat().st_mode & 0o777 for p in art.path.rglob("*")}
    assert modes == {"elm": 0o755, "elm/w.safetensors": 0o644, "t.parquet": 0o644, "manifest.json": 0o644}
    assert art.path.stat().st_mode & 0o777 == 0o755


def test_disk_full_while_publishing_names_the_path_and_leaves_nothing(store, monkeypatch):
    """Simulated (an fsync that fails as on a full disk), so it runs anywhere; the tmpfs tests below are real."""
    good, _ = store.produce("s", inputs={}, config={"k": 0}, code_version="1", build=_writer([]))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ArtifactError, match=r"cannot write .*/s/\.work-\w+/manifest.json.tmp: the disk is full; "
                                            "nothing was published"):
        _produce(store, [])
    monkeypatch.undo()
    assert [a.version for a in store.versions("s")] == [good.version] and store.latest("s").version == good.version
    assert _litter(store) == []


def test_disk_full_on_a_small_tmpfs_while_writing_the_manifest(tmp_path):
    with small_disk(tmp_path / "disk", "256k") as disk:
        store = ArtifactStore(disk / "artifacts")

        def fill(work):
            pd.DataFrame({"x": [1]}).to_parquet(work.path / "t.parquet")
            with contextlib.suppress(OSError), open(disk / "filler", "wb", buffering=0) as f:
                while True:  # every free block, so the manifest is the first thing that does not fit
                    f.write(b"\0" * 4096)

        with pytest.raises(ArtifactError, match=r"cannot write .*manifest.json.tmp: the disk is full"):
            store.produce("s", inputs={}, config={}, code_version="1", build=fill)
        assert _litter(store) == [] and store.versions("s") == []


def test_ingest_onto_a_full_disk_blames_the_disk_not_the_source(tmp_path):
    from elm.data.ingest import IngestConfig, ingest

    with small_disk(tmp_path / "disk", "256k") as disk:
        store = ArtifactStore(disk / "artifacts")
        with pytest.raises(ArtifactError) as e:
            ingest(IngestConfig(), store, tmp_path / "data")
        msg = str(e.value)
        assert "cannot write" in msg and "the disk is full" in msg and ".parquet" in msg, msg
        assert "cannot be read" not in msg
        assert [p.name for p in (disk / "artifacts" / "ingest").iterdir()] == []
