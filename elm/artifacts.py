"""Versioned, immutable, atomically published stage artifacts.

Layout::

    artifacts/<stage>/<version>/manifest.json   what, from what, how, when; files with sha256 and rows
    artifacts/<stage>/<version>/*.parquet       the stage's tables
    artifacts/<stage>/latest -> <version>       moves only after a version is complete
    artifacts/<stage>/.work-<version>/          work in progress (invisible to readers; resumable)

The version is a hash of (stage, input versions, config, stage code version), so the same
inputs and config name the same folder, and a second run finds it and does nothing.

Every file a stage reads goes through ``Artifact.file`` (or ``read_tables`` in elm/lineage.py, which uses it),
which checks it against the manifest's sha256 once per process. A version that fails a check (no manifest,
an unreadable one, a missing or changed file) is "damaged": listed as such, skipped by readers that scan the
store, and rebuilt in place by the next run of the stage that made it.
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

from elm.fileops import cached_sha256, default_mode, fsync_dir, readable_like_the_rest, sha256_file, write_errno, \
    write_error

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


REBUILD_COMMANDS = {"ingest": "elm ingest", "splits": "elm embeddings", "behavioral": "elm embeddings",
                    "semantic": "elm embeddings", "synthesize": "elm synthesize", "train": "elm train",
                    "evaluate": "elm evaluate", "report": "elm report",
                    "projection": "elm explore"}
"""The command that (re)builds each stage's versions; stages not listed are built on demand by their users."""


def rebuild_hint(stage: str) -> str:
    cmd = REBUILD_COMMANDS.get(stage)
    how = f"`{cmd}` with the options that made it" if cmd else "the command that needed it"
    return f"run {how} again: it replaces the damaged version"


def _parquet_rows(path: Path) -> int | None:
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


@dataclass(frozen=True)
class Artifact:
    """A published, complete artifact version."""

    stage: str
    version: str
    path: Path
    manifest: dict = field(repr=False)

    def file(self, name: str) -> Path:
        """The path of a file or folder of this artifact, checked against the manifest's sha256 first."""
        p = self.path / name
        if not p.exists():
            raise ArtifactError(f"artifact {self.stage}/{self.version} has no file {name!r} (in {self.path})")
        entries = self._entries(name)
        if p.is_file() and not entries:
            raise self._damage(f"{p} is not in the manifest (added after publishing)")
        self._check(entries, deep=True)
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
        files = self.manifest["files"]
        self._check(files if names is None else [f for f in files if f["name"] in names], deep=True)

    def problem(self, deep: bool = False) -> str | None:
        """Why this version is damaged (a file missing, of another size, or with deep=True another sha256)."""
        try:
            self._check(self.manifest["files"], deep=deep)
        except ArtifactError as e:
            return str(e)
        return None

    def _entries(self, name: str) -> list[dict]:
        prefix = name.rstrip("/") + "/"
        return [f for f in self.manifest["files"] if f["name"] == name or f["name"].startswith(prefix)]

    def _check(self, entries: list[dict], deep: bool) -> None:
        for f in entries:
            p = self.path / f["name"]
            if not p.is_file():
                raise self._damage(f"{p} is missing")
            if "bytes" in f and p.stat().st_size != f["bytes"]:
                raise self._damage(f"{p} does not match its manifest: {p.stat().st_size} bytes, not {f['bytes']} "
                                   "(truncated or edited)")
            if deep and cached_sha256(p) != f["sha256"]:
                raise self._damage(f"{p} does not match its manifest sha256 (corrupt or edited)")

    def _damage(self, what: str) -> ArtifactError:
        return ArtifactError(f"{what}; made by stage {self.stage!r} as version {self.version}; "
                             f"{rebuild_hint(self.stage)}")


@dataclass
class WorkDir:
    """Where a stage writes a version before it is published. ``summary`` lands in the manifest."""

    path: Path
    stage: str
    version: str
    summary: dict = field(default_factory=dict)


def checked_path(path: str | os.PathLike) -> Path:
    """``path``, checked against the manifest of the artifact that holds it when there is one (a file or
    folder given by path, e.g. ``--model artifacts/train/<v>/elm``); a path outside any artifact as it is."""
    path = Path(path).resolve()
    for holder in list(path.parents)[:4]:
        if (holder / MANIFEST).is_file():
            art = ArtifactStore(holder.parent.parent)._load(holder)
            return art.file(path.relative_to(holder).as_posix())
    return path


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

    def _folders(self, stage: str) -> list[Path]:
        d = self.root / stage
        if not d.is_dir():
            return []
        return [p for p in sorted(d.iterdir())
                if not p.name.startswith(".") and p.name != LATEST and not p.is_symlink() and p.is_dir()]

    def versions(self, stage: str) -> list[Artifact]:
        """Intact versions, oldest first (a quick check: files present with their sizes; ``damaged`` has the rest)."""
        return sorted((a for a, why in self.scan(stage) if why is None), key=lambda a: a.manifest["created_at"])

    def damaged(self, stage: str, deep: bool = False) -> list[tuple[Path, str]]:
        """(folder, reason) of every version folder that cannot be used as it is; ``deep`` hashes every file."""
        return [(a if isinstance(a, Path) else a.path, why) for a, why in self.scan(stage, deep) if why is not None]

    def scan(self, stage: str, deep: bool = False) -> list[tuple[Artifact | Path, str | None]]:
        """Every version folder of a stage: (artifact, None) when intact, (artifact or folder, reason) if not."""
        out: list[tuple[Artifact | Path, str | None]] = []
        for p in self._folders(stage):
            try:
                art = self._load(p)
            except ArtifactError as e:
                out.append((p, str(e)))
                continue
            out.append((art, art.problem(deep)))
        return out

    def get(self, stage: str, version: str) -> Artifact | None:
        """The version, or None when it does not exist; ArtifactError when its folder is damaged."""
        p = self.root / stage / version
        if not p.is_dir():
            return None
        return self._load(p)

    def latest_name(self, stage: str) -> str | None:
        """The version ``latest`` names, whether or not that version is intact."""
        link = self.root / stage / LATEST
        return os.readlink(link) if link.is_symlink() else None

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
        stage = path.parent.name
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            if missing := [k for k in ("stage", "version", "files", "created_at") if k not in manifest]:
                raise KeyError(f"no {', '.join(missing)}")
            art = Artifact(manifest["stage"], manifest["version"], path, manifest)
        except FileNotFoundError:
            raise ArtifactError(f"{path} has no {MANIFEST} (an interrupted or hand-edited publish): a damaged "
                                f"{stage} version; {rebuild_hint(stage)}") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{path / MANIFEST} is unreadable ({type(e).__name__}: {e}): a damaged {stage} "
                                f"version; {rebuild_hint(stage)}") from e
        return art

    def _intact(self, stage: str, version: str) -> Artifact | None:
        """The version when it exists and every file matches its manifest; None (with a warning) when damaged."""
        path = self.root / stage / version
        if not path.is_dir():
            return None
        try:
            art = self._load(path)
            if (why := art.problem(deep=True)) is None:
                return art
        except ArtifactError as e:
            why = str(e)
        log.warning("%s: version %s is damaged, building it again: %s", stage, version, why)
        return None

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
        skip what is done; otherwise it is cleared first. A damaged version of the same id is built
        again and replaced. Returns (artifact, cache_hit).
        """
        version = compute_version(stage, inputs, config, code_version)
        existing = self._intact(stage, version)
        if existing is not None:
            log.info("%s: cache hit, version %s already at %s (no work done)", stage, version, existing.path)
            self._point_latest(stage, version, cache_hit=True)
            return existing, True

        stage_dir = self.root / stage
        work_path = stage_dir / f"{WORK_PREFIX}{version}"
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(write_error(e, stage_dir, "nothing was left behind")) from e
        with self._lock(stage_dir, version):
            existing = self._intact(stage, version)  # another process may have finished it meanwhile
            if existing is not None:
                log.info("%s: cache hit, version %s (built by another run)", stage, version)
                return existing, True
            try:
                final = self._build_and_publish(stage, version, inputs, config, code_version, build, work_path,
                                                resumable)
            except BaseException as e:
                if not resumable:  # nothing to resume: leave no litter behind
                    shutil.rmtree(work_path, ignore_errors=True)
                if isinstance(e, OSError) and write_errno(e) is not None:
                    kept = f"the work so far is kept in {work_path} to resume" if resumable else \
                        "nothing was left behind"
                    raise ArtifactError(write_error(e, work_path, kept)) from e
                raise
        art = self._load(final)
        log.info("%s: published version %s at %s", stage, version, final)
        return art, False

    def _build_and_publish(self, stage, version, inputs, config, code_version, build, work_path: Path,
                           resumable: bool) -> Path:
        if work_path.exists() and not resumable:
            shutil.rmtree(work_path)
        elif work_path.exists():
            log.info("%s: resuming interrupted work in %s", stage, work_path)
        work_path.mkdir(exist_ok=True)
        work = WorkDir(work_path, stage, version)
        log.info("%s: building version %s", stage, version)
        build(work)
        readable_like_the_rest(work_path)
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
        try:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
            os.chmod(tmp, default_mode(work_path))
            for p in work_path.rglob("*"):
                if p.is_file():
                    with open(p, "rb") as f:
                        os.fsync(f.fileno())
            os.replace(tmp, work_path / MANIFEST)
        except BaseException as e:
            tmp.unlink(missing_ok=True)  # a work folder with a manifest would look complete
            if isinstance(e, OSError) and not e.filename:  # write() and close() do not say which file
                raise OSError(e.errno, e.strerror, str(tmp)) from e
            raise
        final = work_path.parent / version
        if final.exists():  # a damaged version of the same id (checked under the lock): replace it
            aside = work_path.parent / f".damaged-{version}-{os.getpid()}"
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
            log.warning("%s: replaced the damaged version %s", stage, version)
        os.rename(work_path, final)
        fsync_dir(work_path.parent)
        self._point_latest(stage, version)
        return final

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

    def _point_latest(self, stage: str, version: str, cache_hit: bool = False) -> None:
        stage_dir = self.root / stage
        link = stage_dir / LATEST
        if link.is_symlink() and os.readlink(link) == version:
            return  # nothing changes: a read-only store serves cache hits
        tmp = stage_dir / f".latest-{os.getpid()}"
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(version, tmp)
            os.replace(tmp, link)
        except OSError as e:
            if not cache_hit or write_errno(e) is None:
                raise
            log.warning("%s: cannot point %s at %s (%s); it still names the version it named",
                        stage, link, version, e.strerror)

    @contextlib.contextmanager
    def _lock(self, stage_dir: Path, version: str) -> Iterator[None]:
        lock_path = stage_dir / f".lock-{version}"
        while True:
            try:
                fh = open(lock_path, "a")
            except OSError as e:
                raise ArtifactError(write_error(e, lock_path, "nothing was left behind")) from e
            fcntl.flock(fh, fcntl.LOCK_EX)
            # The holder before us removes the file as it lets go; a lock on a removed file guards nothing.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                    break
            fh.close()
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            fh.close()
