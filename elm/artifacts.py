"""Versioned, immutable, atomically published stage artifacts.

Layout::

    artifacts/<stage>/<version>/manifest.json   what, from what, how, when; files with sha256 and rows
    artifacts/<stage>/<version>/*.parquet       the stage's tables
    artifacts/<stage>/latest -> <version>       moves only after a version is complete
    artifacts/<stage>/.work-<version>/          work in progress (invisible to readers; resumable)

The version is a hash of (stage, input versions, config, stage code version), so the same
inputs and config name the same folder, and a second run finds it and does nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LATEST = "latest"
WORK_PREFIX = ".work-"


class ArtifactError(RuntimeError):
    """An artifact is missing, corrupt, or cannot be published."""


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings (and hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def compute_version(stage: str, inputs: Mapping[str, str], config: Mapping[str, Any], code_version: str) -> str:
    payload = canonical_json({"stage": stage, "inputs": dict(inputs), "config": dict(config), "code": code_version})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _parquet_rows(path: Path) -> int | None:
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Artifact:
    """A published, complete artifact version."""

    stage: str
    version: str
    path: Path
    manifest: dict = field(repr=False)

    def file(self, name: str) -> Path:
        p = self.path / name
        if not p.exists():
            raise ArtifactError(f"artifact {self.stage}/{self.version} has no file {name!r} (in {self.path})")
        return p

    @property
    def rows(self) -> dict[str, int]:
        return {f["name"]: f["rows"] for f in self.manifest["files"] if f.get("rows") is not None}

    def describe(self) -> str:
        rows = ", ".join(f"{n.removesuffix('.parquet')} {r}" for n, r in self.rows.items())
        return f"{self.stage} {self.version} at {self.path}\n  rows: {rows}"

    @property
    def summary(self) -> dict:
        return self.manifest.get("summary", {})

    def verify(self, names: set[str] | None = None) -> None:
        """Check files (all, or those named) against the sha256 in the manifest (catches corruption and edits)."""
        for f in self.manifest["files"]:
            if names is not None and f["name"] not in names:
                continue
            p = self.path / f["name"]
            if not p.exists():
                raise ArtifactError(f"artifact {self.stage}/{self.version}: file {f['name']} is missing")
            if sha256_file(p) != f["sha256"]:
                raise ArtifactError(
                    f"artifact {self.stage}/{self.version}: file {f['name']} does not match its manifest sha256 "
                    f"(corrupt or edited): {p}"
                )


@dataclass
class WorkDir:
    """Where a stage writes a version before it is published. ``summary`` lands in the manifest."""

    path: Path
    stage: str
    version: str
    summary: dict = field(default_factory=dict)


def open_store(root: str | os.PathLike | None = None) -> ArtifactStore:
    """The store at ``root``, or the default one: $ELM_ARTIFACTS_DIR, else ./artifacts (elm.settings)."""
    from elm.settings import artifacts_dir

    return ArtifactStore(root or artifacts_dir())


class ArtifactStore:
    """The artifacts folder. Every stage reads and writes through one of these."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    # ---- reading -------------------------------------------------------------------------
    def stages(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, stage: str) -> list[Artifact]:
        d = self.root / stage
        if not d.exists():
            return []
        out = []
        for p in sorted(d.iterdir()):
            if p.name.startswith(".") or p.name == LATEST or p.is_symlink():
                continue
            if (p / MANIFEST).exists():
                out.append(self._load(p))
        return sorted(out, key=lambda a: a.manifest["created_at"])

    def get(self, stage: str, version: str) -> Artifact | None:
        p = self.root / stage / version
        if not (p / MANIFEST).exists():
            return None
        return self._load(p)

    def latest(self, stage: str) -> Artifact | None:
        link = self.root / stage / LATEST
        if not link.is_symlink():
            return None
        return self.get(stage, os.readlink(link))

    def resolve(self, stage: str, version: str | None = None) -> Artifact:
        """A version by name (or prefix), or ``latest`` when ``version`` is None."""
        if version in (None, "", LATEST):
            art = self.latest(stage)
            if art is None:
                raise ArtifactError(f"no {stage!r} artifact in {self.root}: run the {stage} stage first")
            return art
        art = self.get(stage, version)
        if art is None:
            matches = [a for a in self.versions(stage) if a.version.startswith(version)]
            if len(matches) != 1:
                raise ArtifactError(f"no single {stage!r} artifact version matching {version!r} in {self.root}")
            art = matches[0]
        return art

    def _load(self, path: Path) -> Artifact:
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ArtifactError(f"unreadable manifest in {path}: {e}") from e
        return Artifact(manifest["stage"], manifest["version"], path, manifest)

    # ---- writing -------------------------------------------------------------------------
    def produce(
        self,
        stage: str,
        *,
        inputs: Mapping[str, str],
        config: Mapping[str, Any],
        code_version: str,
        build: Callable[[WorkDir], None],
        resumable: bool = False,
    ) -> tuple[Artifact, bool]:
        """Return the artifact for these inputs and config, building it only if it does not exist.

        ``build`` writes files into ``work.path``; raising publishes nothing. With ``resumable``,
        a work folder left by an interrupted run is handed back to ``build`` as it was, so it can
        skip what is done; otherwise it is cleared first. Returns (artifact, cache_hit).
        """
        version = compute_version(stage, inputs, config, code_version)
        existing = self.get(stage, version)
        if existing is not None:
            log.info("%s: cache hit, version %s already at %s (no work done)", stage, version, existing.path)
            self._point_latest(stage, version)
            return existing, True

        stage_dir = self.root / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        work_path = stage_dir / f"{WORK_PREFIX}{version}"
        with self._lock(stage_dir, version):
            existing = self.get(stage, version)  # another process may have finished it meanwhile
            if existing is not None:
                log.info("%s: cache hit, version %s (built by another run)", stage, version)
                return existing, True
            if work_path.exists() and not resumable:
                shutil.rmtree(work_path)
            elif work_path.exists():
                log.info("%s: resuming interrupted work in %s", stage, work_path)
            work_path.mkdir(exist_ok=True)
            work = WorkDir(work_path, stage, version)
            log.info("%s: building version %s", stage, version)
            try:
                build(work)
            except BaseException:
                if not resumable:  # nothing to resume: leave no litter behind
                    shutil.rmtree(work_path, ignore_errors=True)
                raise
            manifest = {
                "stage": stage,
                "version": version,
                "inputs": dict(inputs),
                "config": json.loads(canonical_json(config)),
                "code_version": code_version,
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "files": self._describe_files(work_path),
                "summary": json.loads(canonical_json(work.summary)),
            }
            tmp = work_path / (MANIFEST + ".tmp")
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
            os.replace(tmp, work_path / MANIFEST)
            for p in work_path.rglob("*"):
                if p.is_file():
                    with open(p, "rb") as f:
                        os.fsync(f.fileno())
            final = stage_dir / version
            os.rename(work_path, final)
            _fsync_dir(stage_dir)
            self._point_latest(stage, version)
        art = self._load(final)
        log.info("%s: published version %s at %s", stage, version, final)
        return art, False

    def _describe_files(self, path: Path) -> list[dict]:
        files = []
        for p in sorted(path.rglob("*")):
            if not p.is_file() or p.name in (MANIFEST, MANIFEST + ".tmp") or p.name.startswith("."):
                continue
            files.append(
                {
                    "name": p.relative_to(path).as_posix(),
                    "sha256": sha256_file(p),
                    "bytes": p.stat().st_size,
                    "rows": _parquet_rows(p),
                }
            )
        return files

    def _point_latest(self, stage: str, version: str) -> None:
        stage_dir = self.root / stage
        tmp = stage_dir / f".latest-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(version, tmp)
        os.replace(tmp, stage_dir / LATEST)

    @contextlib.contextmanager
    def _lock(self, stage_dir: Path, version: str) -> Iterator[None]:
        lock_path = stage_dir / f".lock-{version}"
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
