"""The ELM: a pretrained causal LM that reads domain vectors through one adapter per embedding space.

    config = ELMConfig(spaces=(SpaceSpec("semantic_movies", "movie", 384),))
    elm = ELM.from_base(config)                    # SmolLM2 + a fresh adapter per space
    batch = elm.collator()([Example("Summarize the movie <emb>.", [("semantic_movies", v)], "A heist...")])
    elm(**batch).loss.backward()
    elm.generate(["Summarize the movie <emb>."], [[("semantic_movies", v)]])   # -> ["A heist ..."]
    elm.save("out/elm", include_base=False); ELM.load("out/elm")

Forward (docs/METHOD.md, "Idea": ELM = ((E_0 x E_A)^H, M_0)): the LM's own embedding layer E_0 embeds the tokens; at
every slot position the adapter E_A's output for that slot's vector replaces it; the LM body M_0 runs on
the result. A vector fills ``soft_tokens`` consecutive positions. Stage 1 trains only the adapters
(freeze_base), stage 2 everything (unfreeze_base).

A saved ELM folder:

    elm_config.json         ELMConfig + whether base/ is included
    adapters.safetensors    every adapter's weights, keys "<space>.<param>"
    tokenizer files         the tokenizer the prompts were built with
    base/                   (include_base only) the LM as a transformers folder; otherwise
                            config.base_model is loaded (stage 1 checkpoints stay a few MB)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from elm.model.adapter import build_adapter, embedding_rms
from elm.model.base_lm import load_causal_lm, load_tokenizer, resolve_model_path
from elm.model.batch import IGNORE_INDEX, ELMCollator, ELMInputError, Example, end_token_id
from elm.model.config import ELMConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from elm.artifacts import ArtifactStore

CONFIG_FILE = "elm_config.json"
ADAPTERS_FILE = "adapters.safetensors"
BASE_DIR = "base"
FORMAT_VERSION = 1
_NEW_TOKENS_ONLY_WARNING = "Passing `.*` with `inputs_embeds` and without `input_ids`"


class ELMLoadError(RuntimeError):
    """A saved ELM folder that cannot be read; the message names the file."""


class ELM(nn.Module):
    """Base LM + adapters, spliced at slot positions. Build with from_base or load."""

    def __init__(self, config: ELMConfig, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 adapters: nn.ModuleDict):
        super().__init__()
        self.config = config
        self.lm = lm
        self.tokenizer = tokenizer
        self.adapters = adapters
        self.space_names = [s.name for s in config.spaces]
        self.end_id = end_token_id(tokenizer, config.end_token)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_base(cls, config: ELMConfig, store: ArtifactStore | None = None, lm: PreTrainedModel | None = None,
                  tokenizer: PreTrainedTokenizerBase | None = None, samples: dict[str, Any] | None = None,
                  match_scale: bool = True) -> ELM:
        """The base LM (loaded unless given) with a fresh adapter per space.

        With match_scale, each adapter's outputs start at the RMS of the LM's input embeddings, measured
        on ``samples[space]`` (real vectors) where given, else on stand-in inputs.
        """
        if lm is None:
            lm, tok = load_causal_lm(config.base_model, store)
            tokenizer = tokenizer or tok
        elif tokenizer is None:
            tokenizer = load_tokenizer(resolve_model_path(config.base_model, store))
        embeddings = lm.get_input_embeddings()
        target = embedding_rms(embeddings.weight) if match_scale else None
        samples = samples or {}
        if unknown := sorted(set(samples) - {s.name for s in config.spaces}):
            raise ValueError(f"samples for unknown space(s) {unknown}")
        adapters = nn.ModuleDict({
            s.name: build_adapter(config.adapter_config(s, embeddings.embedding_dim), target, samples.get(s.name))
            for s in config.spaces})
        adapters.to(embeddings.weight.device)
        return cls(config, lm, tokenizer, adapters).eval()  # like a loaded LM; the trainer calls .train()

    def collator(self, padding_side: str = "right", max_length: int | None = None) -> ELMCollator:
        """Examples -> batch dict (elm_batch): right padding for training, left for generation."""
        return ELMCollator(self.tokenizer, self.config, padding_side, max_length)

    # -- training helpers --------------------------------------------------------------------------

    def freeze_base(self) -> None:
        """Stage 1: only the adapters learn (gradients still flow through the LM to the slots)."""
        self.lm.requires_grad_(False)
        self.adapters.requires_grad_(True)

    def unfreeze_base(self) -> None:
        """Stage 2: everything learns."""
        self.lm.requires_grad_(True)
        self.adapters.requires_grad_(True)

    def adapter_parameters(self) -> list[nn.Parameter]:
        return list(self.adapters.parameters())

    def base_parameters(self) -> list[nn.Parameter]:
        return list(self.lm.parameters())

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    # -- forward -----------------------------------------------------------------------------------

    def soft_tokens_for(self, slot_vectors: dict[str, torch.Tensor], slot_space: torch.Tensor) -> torch.Tensor:
        """Adapter outputs of every slot in batch order: [n_slots, soft_tokens, hidden]."""
        n_slots = slot_space.shape[0]
        emb = self.lm.get_input_embeddings().weight
        out = emb.new_zeros(n_slots, self.config.soft_tokens, emb.shape[1])
        slot_space = slot_space.to(emb.device)
        for name, vecs in slot_vectors.items():
            if name not in self.adapters:
                raise ELMInputError(f"slot_vectors: unknown embedding space {name!r}; known: {self.space_names}")
            rows = slot_space == self.space_names.index(name)
            if int(rows.sum()) != vecs.shape[0]:
                raise ELMInputError(f"slot_vectors[{name!r}] has {vecs.shape[0]} vectors but slot_space "
                                    f"assigns {int(rows.sum())} slots to it")
            # One adapter call per space; boolean assignment keeps each space's vectors in slot order.
            out[rows] = self.adapters[name](vecs.to(emb.device)).to(emb.dtype)
        covered = sum(v.shape[0] for v in slot_vectors.values())
        if covered != n_slots:
            raise ELMInputError(f"slot_space lists {n_slots} slots but slot_vectors hold {covered} vectors")
        return out

    def embed(self, input_ids: torch.Tensor, slot_mask: torch.Tensor, slot_vectors: dict[str, torch.Tensor],
              slot_space: torch.Tensor) -> torch.Tensor:
        """inputs_embeds: the LM's token embeddings, with adapter outputs at slot positions (row-major)."""
        embeds = self.lm.get_input_embeddings()(input_ids)
        n_slots = slot_space.shape[0]
        n_positions = int(slot_mask.sum())
        if n_positions != n_slots * self.config.soft_tokens:
            raise ELMInputError(f"slot_mask marks {n_positions} positions; {n_slots} slots x "
                                f"{self.config.soft_tokens} soft tokens need {n_slots * self.config.soft_tokens}")
        if n_slots == 0:
            return embeds
        soft = self.soft_tokens_for(slot_vectors, slot_space)
        # masked_scatter fills the mask in row-major order: slot k's soft tokens go to its k-th group of
        # positions; out of place, so gradients reach the adapters even when the embedding layer is frozen.
        return embeds.masked_scatter(slot_mask.to(embeds.device)[..., None], soft)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, slot_mask: torch.Tensor,
                slot_vectors: dict[str, torch.Tensor], slot_space: torch.Tensor,
                labels: torch.Tensor | None = None, target_logits_only: bool = False, **lm_kwargs):
        """The LM's output (loss when labels are given, logits [B, L, vocab]) on the spliced embeddings.

        ``target_logits_only`` (training): logits only where a label is predicted, ``.logits`` then
        [n_labels, vocab], the loss unchanged. Most positions of a row are prompt, and the vocabulary-wide
        projection and softmax at them would be paid for a loss that ignores them.
        """
        embeds = self.embed(input_ids, slot_mask, slot_vectors, slot_space)
        # Positions count real tokens only, so left padding does not shift the rotary positions.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if not target_logits_only or labels is None:
            return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                           labels=labels, **lm_kwargs)
        from transformers.modeling_outputs import CausalLMOutput

        hidden = self.lm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask,
                                       position_ids=position_ids, **lm_kwargs).last_hidden_state
        targets = labels[:, 1:]  # position t predicts token t + 1, as the LM's own loss shifts them
        keep = targets != IGNORE_INDEX
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][keep])
        return CausalLMOutput(loss=F.cross_entropy(logits.float(), targets[keep]), logits=logits)

    # -- generation --------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], vectors: Sequence[Sequence[tuple[str, Any]]], *,
                 slots: Sequence[tuple[str, ...] | None] | None = None, max_new_tokens: int = 128,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 repetition_penalty: float = 1.0, batch_size: int = 8, guidance_scale: float | Sequence[float] = 1.0,
                 null_vectors: dict[str, Any] | None = None, **generate_kwargs) -> list[str]:
        """The answer to each prompt (new text only, stripped), in input order; greedy by default.

        Batches are left-padded and grouped by prompt length; ``generate_kwargs`` go to ``lm.generate``
        (e.g. no_repeat_ngram_size=3). ``guidance_scale`` != 1 (one number, or one per prompt) guides decoding
        by the vectors (guidance.py): ``null_vectors`` then gives the null vector of every space the guided
        prompts use (space name -> vector).
        """
        if isinstance(prompts, str):
            raise TypeError("generate takes a list of prompts, got one string")
        if len(prompts) != len(vectors):
            raise ELMInputError(f"{len(prompts)} prompts but {len(vectors)} vector lists")
        if slots is not None and len(slots) != len(prompts):
            raise ELMInputError(f"{len(prompts)} prompts but {len(slots)} slot kind tuples")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        examples = [Example(p, v, None, None if slots is None else slots[i])
                    for i, (p, v) in enumerate(zip(prompts, vectors))]
        collate = self.collator(padding_side="left")
        collate([*examples])  # validate every example up front: fail before spending time generating
        scales = [float(g) for g in guidance_scale] if isinstance(guidance_scale, Sequence) \
            else [float(guidance_scale)] * len(examples)
        if len(scales) != len(examples):
            raise ELMInputError(f"{len(prompts)} prompts but {len(scales)} guidance scales")
        if any(not g >= 0 for g in scales):
            raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale}")
        if any(g != 1.0 for g in scales):
            used = {s for ex, g in zip(examples, scales) if g != 1.0 for s, _ in ex.vectors}
            if missing := sorted(used - set(null_vectors or {})):
                raise ELMInputError(f"guidance_scale={guidance_scale} needs a null vector for space(s) {missing} "
                                    f"(null_vectors=), or guidance_scale=1")
            nulls = [Example(ex.prompt, [(s, null_vectors[s]) for s, _ in ex.vectors], None, ex.slots)
                     if g != 1.0 else None for ex, g in zip(examples, scales)]
        sampling = dict(do_sample=do_sample, repetition_penalty=repetition_penalty)
        if do_sample:
            sampling |= dict(temperature=temperature, top_p=top_p)
        stop = [self.end_id] + ([self.tokenizer.eos_token_id]
                                if self.tokenizer.eos_token_id not in (None, self.end_id) else [])
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt))
        out: list[str] = [""] * len(examples)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start: start + batch_size]
                batch = collate([examples[i] for i in idx])
                embeds = self.embed(batch["input_ids"].to(self.device), batch["slot_mask"], batch["slot_vectors"],
                                    batch["slot_space"])
                extra = dict(generate_kwargs)
                mask = batch["attention_mask"].to(self.device)
                if any(scales[i] != 1.0 for i in idx):  # a batch of unguided rows skips the null pass
                    from transformers import LogitsProcessorList

                    from elm.model.guidance import FirstHalfStreamer, PairedGuidance, VectorGuidance

                    # The same prompts, so the same padding as batch; an unguided row's null is itself.
                    nb = collate([nulls[i] or examples[i] for i in idx])
                    null = self.embed(nb["input_ids"].to(self.device), nb["slot_mask"], nb["slot_vectors"],
                                      nb["slot_space"])
                    if not do_sample:  # greedy: the null rows ride in the same batch (guidance.py)
                        guidance = PairedGuidance([scales[i] for i in idx], self.device)
                        embeds, mask = torch.cat([embeds, null]), torch.cat([mask, mask])
                        if extra.get("streamer") is not None:
                            extra["streamer"] = FirstHalfStreamer(extra["streamer"], len(idx))
                    else:
                        guidance = VectorGuidance(self.lm, null, mask, [scales[i] for i in idx])
                    extra["logits_processor"] = LogitsProcessorList([*extra.get("logits_processor", []), guidance])
                with warnings.catch_warnings():
                    # Penalties and n-gram bans on new tokens only are what we want: prompt ids are placeholders.
                    warnings.filterwarnings("ignore", message=_NEW_TOKENS_ONLY_WARNING)
                    new = self.lm.generate(
                        inputs_embeds=embeds, attention_mask=mask,
                        max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=collate.pad_id, use_cache=True,
                        **sampling, **extra)
                # With inputs_embeds and no input_ids, generate returns only the new tokens (the null half
                # of a paired batch repeats the first).
                for i, text in zip(idx, self.tokenizer.batch_decode(new[:len(idx)], skip_special_tokens=True)):
                    out[i] = text.strip()
        finally:
            self.train(was_training)
        return out

    # -- persistence -------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, include_base: bool) -> Path:
        """Write the ELM to ``folder`` atomically (temp folder beside it, then rename); replaces an old one."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        try:
            meta = {"format_version": FORMAT_VERSION, "base_included": include_base,
                    "hidden_size": self.lm.get_input_embeddings().embedding_dim, "config": self.config.to_dict()}
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            state = {k: v.detach().to("cpu").contiguous() for k, v in self.adapters.state_dict().items()}
            save_file(state, str(tmp / ADAPTERS_FILE), metadata={"format": "pt"})
            self.tokenizer.save_pretrained(tmp)
            if include_base:
                self.lm.save_pretrained(tmp / BASE_DIR, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / BASE_DIR)  # so base/ is a complete transformers folder
            if folder.exists():
                # Two renames: a crash between them leaves the old version intact under .old-*.
                old = folder.with_name(f".old-{folder.name}-{uuid.uuid4().hex[:8]}")
                folder.rename(old)
                tmp.rename(folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, store: ArtifactStore | None = None) -> ELM:
        """An ELM saved by save(); the base LM from base/ if included, else from config.base_model."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not folder.is_dir():
            raise ELMLoadError(f"no saved ELM at {folder} (not a folder)")
        cfg_path, weights = folder / CONFIG_FILE, folder / ADAPTERS_FILE
        for p in (cfg_path, weights, folder / "tokenizer_config.json"):
            if not p.is_file():
                raise ELMLoadError(f"{p} is missing: {folder} is not a complete saved ELM")
        try:
            meta = json.loads(cfg_path.read_text())
            config = ELMConfig.from_dict(meta["config"])
            base_included = bool(meta["base_included"])
        except (ValueError, KeyError, TypeError) as e:
            raise ELMLoadError(f"{cfg_path} is corrupt or not an ELM config: {e}") from e
        try:
            tokenizer = load_tokenizer(str(folder))
        except Exception as e:  # noqa: BLE001 - tokenizers raise many types; name the folder
            raise ELMLoadError(f"cannot load the tokenizer files in {folder}: {e}") from e
        if base_included:
            from transformers import AutoModelForCausalLM

            base = folder / BASE_DIR
            try:
                lm = AutoModelForCausalLM.from_pretrained(base, dtype="auto")  # the dtype it was trained in
            except Exception as e:  # noqa: BLE001
                raise ELMLoadError(f"cannot load the base model in {base}: {e}") from e
            lm.eval()
        else:
            lm, _ = load_causal_lm(config.base_model, store)
        elm = cls.from_base(config, lm=lm, tokenizer=tokenizer, match_scale=False)
        try:
            state = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type on corrupt files
            raise ELMLoadError(f"{weights} is corrupt: {e}") from e
        try:
            elm.adapters.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ELMLoadError(f"{weights} does not match {cfg_path}: {e}") from e
        elm.eval()
        return elm
