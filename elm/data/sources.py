"""Where MovieLens files come from: a local folder or zip, a mirror folder, the embedded copy, or GroupLens.

Every source ends up as a folder of the dataset's original files. Files with a known official
sha256 are checked before use; a download is checked before it is moved into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from elm.artifacts import sha256_file

log = logging.getLogger(__name__)

#: Folder of dataset folders (``$ELM_MOVIELENS_DIR/ml-100k/u.data``), e.g. a shared offline mirror.
MIRROR_ENV = "ELM_MOVIELENS_DIR"
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "resources"  # elm/resources


class SourceError(RuntimeError):
    """A dataset source is missing, corrupt, incomplete or fails its checksum."""


class DownloadError(SourceError):
    """The network failed mid-download: worth a retry (a bad checksum is not)."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    url: str
    #: "csv" for the ml-latest/ml-25m layout, "ml-100k" for the older tab/pipe layout.
    layout: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    #: Official sha256 of files inside the release (a missing entry is not checked).
    sha256: dict[str, str] = field(default_factory=dict)
    redistributable: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "ml-latest-small": DatasetSpec(
        name="ml-latest-small",
        url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
        layout="csv",
        required=("ratings.csv", "movies.csv", "tags.csv", "links.csv"),
        optional=("README.txt",),
        sha256={
            "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
            "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
            "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
            "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
        },
        redistributable=True,
    ),
    "ml-25m": DatasetSpec(
        name="ml-25m",
        url="https://files.grouplens.org/datasets/movielens/ml-25m.zip",
        layout="csv",
        required=("ratings.csv", "movies.csv", "tags.csv", "links.csv"),
        optional=("genome-scores.csv", "genome-tags.csv", "README.txt"),
        sha256={
            "movies.csv": "c50dea6973e619f9bc1decd4afa3e35358b83a5fb663dac0ec82252a011d023d",
            "links.csv": "dd07bbd9aa8e76d263d8323ddd18ec87b6e00a79a68a5896afe9a737af22322b",
            "genome-tags.csv": "c84bf1e2addbf38432426a2bb2a117a59d76c0873fc875fe8764e92842fd3bfb",
            "genome-scores.csv": "dcee649a8ba5c02b14b5ac5ff34dd27edcf58beff1d902cdf9c114927d1f8f70",
            "ratings.csv": "9c85525758597dca76e8d98cebb9c13e018c2317b09a0878b6d383179526e385",
            "tags.csv": "84793c391a8e2a8b93190b5e780f781563a184c413d02ff2104cc2f442e2830a",
        },
    ),
    "ml-100k": DatasetSpec(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        layout="ml-100k",
        required=("u.data", "u.item"),
        optional=("u.genre", "u.user", "README"),
        sha256={
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
        },
    ),
}


def get_spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise SourceError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}") from None


@dataclass(frozen=True)
class ResolvedSource:
    """A folder holding the dataset's files, and how we got it (for logs and the manifest)."""

    folder: Path
    origin: str
    #: sha256 of every required/optional file present: the identity of the input data.
    checksums: dict[str, str]


def resolve_source(
    dataset: str,
    source: str | None = None,
    *,
    data_dir: Path = Path("data"),
    verify: bool = True,
) -> ResolvedSource:
    """Find (or fetch) the dataset's files and check them.

    ``source``: a folder, a ``.zip``, or an ``http(s)://`` URL. When None: ``$ELM_MOVIELENS_DIR/<dataset>``,
    then the copy shipped in the package (ml-latest-small only), then a previous download in
    ``data_dir/raw``, then the official GroupLens URL.
    """
    spec = get_spec(dataset)
    if source is None:
        mirror = os.environ.get(MIRROR_ENV)
        if mirror and (Path(mirror) / dataset).is_dir():
            source = str(Path(mirror) / dataset)
        elif spec.redistributable and (EMBEDDED_DIR / dataset).is_dir():
            source = str(EMBEDDED_DIR / dataset)
        elif (data_dir / "raw" / dataset / "extracted").is_dir():
            source = str(data_dir / "raw" / dataset / "extracted")
        else:
            source = spec.url

    if source.startswith(("http://", "https://")):
        zip_path = download(source, data_dir / "raw" / dataset / Path(source).name)
        folder = extract_zip(zip_path, data_dir / "raw" / dataset / "extracted", spec)
        origin = source
        verify = True  # a download is always checked
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise SourceError(f"{dataset}: source path does not exist: {path}")
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise SourceError(f"{dataset}: {path} is neither a folder nor a readable zip archive (truncated?)")
            folder = extract_zip(path, data_dir / "raw" / dataset / f"from-{path.stem}", spec)
        else:
            folder = path
        origin = str(path.resolve())

    missing = [f for f in spec.required if not (folder / f).is_file()]
    if missing:
        raise SourceError(f"{dataset}: {folder} lacks required file(s) {', '.join(missing)}")
    checksums = {f: sha256_file(folder / f) for f in spec.required + spec.optional if (folder / f).is_file()}
    if verify:
        check_checksums(dataset, folder, checksums, spec.sha256)
    log.info("%s: using files in %s (from %s)", dataset, folder, origin)
    return ResolvedSource(folder=folder, origin=origin, checksums=checksums)


def check_checksums(dataset: str, folder: Path, actual: dict[str, str], expected: dict[str, str]) -> None:
    bad = [name for name, want in expected.items() if name in actual and actual[name] != want]
    if bad:
        raise SourceError(
            f"{dataset}: checksum mismatch in {folder} (edited, truncated or a different release): "
            + "; ".join(f"{name}: expected sha256 {expected[name][:12]}..., got {actual[name][:12]}..."
                        + _line_ending_hint(folder / name, expected[name]) for name in bad)
            + ". Pass verify=False / --no-verify to ingest modified data deliberately."
        )


def _line_ending_hint(path: Path, want: str) -> str:
    """Whether the file is the official one with its line endings converted (git's autocrlf, dos2unix, an
    editor): then say so, and how to get the original back. Only run on a mismatch."""
    for style, ending in (("CRLF", b"\r\n"), ("LF", b"\n")):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for line in f:
                h.update(line.rstrip(b"\r\n") + ending if line.endswith(b"\n") else line)
        if h.hexdigest() == want:
            return (f" (the official file with converted line endings: the release has {style}; restore the "
                    f"original bytes, e.g. extract the zip again, or check it out with `git config core.autocrlf "
                    f"false`)")
    return ""


def download(url: str, dest: Path, *, timeout: float = 60.0) -> Path:
    """Download to ``dest`` (through a ``.part`` file, with a progress bar); reuse a finished one."""
    from tqdm.auto import tqdm

    if dest.exists():
        log.info("download cache hit: %s", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(part, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {dest.name}"
            ) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise DownloadError(f"download of {url} stopped after {part.stat().st_size} of {total} bytes")
    except (urllib.error.URLError, TimeoutError, OSError, DownloadError) as e:
        part.unlink(missing_ok=True)
        if isinstance(e, DownloadError):
            raise
        raise DownloadError(f"could not download {url}: {e}") from e
    os.replace(part, dest)
    return dest


EXTRACTED_FROM = ".extracted-from"
"""In an extracted folder: which zip (path, size, mtime) it holds, so a second extraction of it is skipped."""


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder (flock on the folder itself: no lock file is left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def extract_zip(zip_path: Path, dest: Path, spec: DatasetSpec) -> Path:
    """Extract the dataset's files (flattening the zip's top folder) into ``dest``, atomically.

    Concurrent runs extracting into the same place take turns, and the zip ``dest`` already holds is not
    extracted again: replacing a folder that another ingest is reading would pull it from under that run.
    """
    wanted = set(spec.required + spec.optional)
    st = zip_path.stat()
    identity = f"{zip_path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n"
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = {Path(m.filename).name: m for m in zf.infolist() if Path(m.filename).name in wanted}
            missing = [f for f in spec.required if f not in members]
            if missing:
                raise SourceError(f"{spec.name}: zip {zip_path} lacks required file(s) {', '.join(missing)}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with _folder_lock(dest.parent):
                marker = dest / EXTRACTED_FROM
                if marker.is_file() and marker.read_text() == identity and all((dest / n).is_file() for n in members):
                    log.info("%s: %s already holds the files of %s", spec.name, dest, zip_path)
                    return dest
                tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
                try:
                    for name, member in members.items():
                        with zf.open(member) as src, open(tmp / name, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                    (tmp / EXTRACTED_FROM).write_text(identity)
                    if dest.exists():
                        aside = dest.with_name(f".old-{dest.name}-{os.getpid()}")
                        os.rename(dest, aside)
                        shutil.rmtree(aside, ignore_errors=True)
                    os.rename(tmp, dest)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        raise SourceError(f"{spec.name}: zip archive {zip_path} is truncated or corrupt: {e}") from e
    return dest
