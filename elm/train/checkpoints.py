"""Checkpoints: atomic folders holding the trainable weights (safetensors), optimizer/scheduler state,
every process's RNG and state.json (the loop's position, curves and config fingerprint), each file checked
against its sha256 when read back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from elm.train.config import CheckpointError

if TYPE_CHECKING:
    import torch

    from elm.model.elm import ELM


def checkpoint_name(stage: int, step: int) -> str:
    return f"stage{stage}-step{step:06d}"


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders, oldest first (in-progress ``.tmp-*`` folders are not checkpoints)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("stage") and "-step" in p.name]
    return sorted(found, key=lambda p: (int(p.name[5:p.name.index("-")]), int(p.name.split("-step")[1])))


def read_checkpoint(path: Path) -> dict:
    """state.json of a checkpoint after checking every file against its sha256; CheckpointError otherwise."""
    from elm.artifacts import sha256_file

    hint = (f"delete it (rm -r {path}) to resume from the checkpoint before it, or delete {path.parent} "
            "to start over")
    try:
        state = json.loads((path / "state.json").read_text())
        files = state["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} is partial or corrupt (state.json: {e}); {hint}") from None
    for name, digest in files.items():
        p = path / name
        if not p.is_file():
            raise CheckpointError(f"checkpoint {path} is partial: {name} is missing; {hint}")
        if sha256_file(p) != digest:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its sha256; {hint}")
    return state


def trainable_state(elm: ELM) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu").contiguous() for n, p in elm.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, state: dict, elm: ELM, optimizer, scheduler, accelerator, keep: int) -> None:
    """Write a checkpoint atomically (temp folder, then rename) and keep the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    from elm.artifacts import sha256_file

    name = checkpoint_name(state["stage"], state["step"])
    tmp = root / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Every process has its own RNG stream (dropout differs per shard).
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file(trainable_state(elm), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        opt = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        if accelerator.scaler is not None:
            opt["scaler"] = accelerator.scaler.state_dict()
        torch.save(opt, tmp / "optimizer.pt")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / "state.json").write_text(json.dumps({**state, "files": files}, indent=1))
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(path: Path, elm: ELM, optimizer, scheduler, accelerator) -> None:
    """Restore weights, optimizer, scheduler and this process's RNG from a checked checkpoint."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    params = dict(elm.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise CheckpointError(f"checkpoint {path} does not fit this model (another config?): "
                              f"missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)
    opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    if accelerator.scaler is not None and "scaler" in opt:
        accelerator.scaler.load_state_dict(opt["scaler"])
    rng_file = path / f"rng_{accelerator.process_index}.pt"
    if not rng_file.is_file():
        raise CheckpointError(f"checkpoint {path} has no RNG state for process {accelerator.process_index} "
                              "(saved with fewer processes?)")
    rng = torch.load(rng_file, weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
