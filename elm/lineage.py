"""What each stage reads and writes, and one way to find a stage's inputs.

Every stage declares its contract once, as a ``StageSpec`` beside its code: its name, the stages it reads
directly, the files it publishes and its code version (part of every artifact version, so a change to
what a stage computes gives new versions). The chain, as declared::

    ingest -> splits, behavioral, semantic -> synthesize -> train -> evaluate -> report

A stage that reads another stage's inputs indirectly (evaluation scores against the vectors the model
was trained on) does not hard-code where each one comes from: ``resolve_lineage`` walks the manifests
from the artifact it starts at (each manifest names its inputs' versions) and returns every stage asked
for, with the versions a caller pinned taking precedence. Adding an embedding space is then a new stage
in ``elm/embed/`` and a line in ``elm/embed/spaces.py``; the later stages find it through its lineage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from elm.artifacts import Artifact, ArtifactError, ArtifactStore, WorkDir


@dataclass(frozen=True)
class StageSpec:
    name: str
    """The artifact folder: artifacts/<name>/<version>."""
    inputs: tuple[str, ...]
    """The stages whose artifacts it reads (directly or through their lineage), recorded in its manifest."""
    files: tuple[str, ...]
    """What a published version holds (folders end with "/")."""
    code_version: str
    """Bumped when the stage computes something different from the same inputs and config."""


def home_store(art: Artifact) -> ArtifactStore:
    """The store an artifact was published in: the versions its manifest names live there."""
    return ArtifactStore(art.path.parent.parent)


def resolve_lineage(start: Artifact, wanted: Iterable[str], pinned: Mapping[str, str | None] | None = None,
                    store: ArtifactStore | None = None) -> dict[str, Artifact]:
    """``start`` and the artifact of every ``wanted`` stage in its lineage.

    Breadth-first over manifest inputs: a stage's version is the one ``pinned`` gives, else the one the
    nearest artifact that read it names. A pinned artifact's own inputs are followed, not the start's.
    Raises ArtifactError naming a wanted stage that nothing in the lineage read.
    """
    store = store or home_store(start)
    pinned = {k: v for k, v in (pinned or {}).items() if v}
    wanted = list(dict.fromkeys(wanted))
    found: dict[str, Artifact] = {start.stage: start}
    queue = [start]
    while queue and any(w not in found for w in wanted):
        art = queue.pop(0)
        for stage, version in art.manifest.get("inputs", {}).items():
            if stage in found:
                continue
            found[stage] = store.resolve(stage, pinned.get(stage, version))
            queue.append(found[stage])
    for stage in wanted:  # pinned stages that no manifest names (a lineage from an older layout)
        if stage not in found and stage in pinned:
            found[stage] = store.resolve(stage, pinned[stage])
    if missing := [w for w in wanted if w not in found]:
        raise ArtifactError(f"{start.stage}/{start.version} was not made from any {missing} artifact "
                            f"(its inputs: {start.manifest.get('inputs', {})}); pass the version(s) explicitly")
    return {start.stage: start, **{w: found[w] for w in wanted}}


def publish(store: ArtifactStore, stage: StageSpec, arts: Mapping[str, Artifact], config: Mapping,
            build: Callable[[WorkDir], None], resumable: bool = False) -> tuple[Artifact, bool]:
    """``store.produce`` for a declared stage: its inputs' versions (every one it declares, no other) go into
    the version and the manifest, so the lineage of what it publishes is always complete."""
    if missing := [s for s in stage.inputs if s not in arts]:
        raise ArtifactError(f"{stage.name} needs the artifacts {missing} too (it reads {list(stage.inputs)})")
    inputs = {s: arts[s].version for s in stage.inputs}
    return store.produce(stage.name, inputs=inputs, config=config, code_version=stage.code_version, build=build,
                         resumable=resumable)


def check_pins(stage: StageSpec, pinned: Mapping[str, str | None]) -> None:
    """A user's ``--from stage=version`` must name one of the stage's inputs."""
    if unknown := sorted(set(pinned) - set(stage.inputs)):
        raise ValueError(f"{stage.name} reads {', '.join(stage.inputs)}; it cannot take a version of {unknown}")


def read_tables(art: Artifact, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Parquet tables of an artifact, each checked against the manifest's sha256 first (catches corruption).
    Tables named in ``optional`` may be absent (the tag genome exists on ml-25m only)."""
    out = {}
    for name in names:
        path = art.path / f"{name}.parquet"
        if not path.exists():
            if name in optional:
                continue
            raise ArtifactError(f"{art.stage}/{art.version} has no table {name!r} ({path})")
        path = art.file(path.name)  # checked against the manifest's sha256
        try:
            out[name] = pq.read_table(path).to_pandas()
        except (OSError, pa.ArrowException) as e:
            raise ArtifactError(f"{path}: unreadable Parquet in input artifact {art.stage}/{art.version}: {e}") from e
    return out


def newer_than_lineage(store: ArtifactStore, art: Artifact, stages: Iterable[str]) -> dict[str, str]:
    """stage -> the newest version in ``store``, for each of ``stages`` whose newest version is not the one
    ``art`` was made from (new data or embeddings that have landed since): what a re-run of the chain would use."""
    made_from = _lineage_versions(store, art)
    out = {}
    for stage in stages:
        versions = store.versions(stage)
        if versions and made_from.get(stage) != versions[-1].version:
            out[stage] = versions[-1].version
    return out


def _lineage_versions(store: ArtifactStore, art: Artifact) -> dict[str, str]:
    """stage -> version of every artifact in ``art``'s lineage (inputs that are not stages, e.g. an ingest's
    source files, are left out)."""
    stages, found, queue = set(store.stages()), {}, [art]
    while queue:
        for stage, version in queue.pop().manifest.get("inputs", {}).items():
            if stage in stages and stage not in found:
                found[stage] = version
                try:
                    queue.append(store.resolve(stage, version))
                except ArtifactError:
                    continue
    return found
