"""The adapter and the ELM model on a tiny random Llama with SmolLM2's real tokenizer and chat template."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from elm.model.adapter import AdapterConfig, build_adapter, embedding_rms
from elm.model.base_lm import load_causal_lm
from elm.model.batch import IGNORE_INDEX, ELMInputError, Example
from elm.model.elm import ELM, ELMLoadError
from elm.model.config import ELMConfig, SpaceSpec
from elm.synth.catalog import EMB_TOKEN, get_task, render_elm_prompt

SEM, BEH, USR = "semantic_movies", "behavioral_movies", "behavioral_users"
DIMS = {SEM: 16, BEH: 8, USR: 6}
SPACES = (SpaceSpec(SEM, "movie", DIMS[SEM], "semantic/test"), SpaceSpec(BEH, "movie", DIMS[BEH]),
          SpaceSpec(USR, "user", DIMS[USR]))


def vec(space: str, seed: int) -> torch.Tensor:
    return torch.randn(DIMS[space], generator=torch.Generator().manual_seed(seed))


def make_elm(lm_dir, seed: int = 0, **config) -> ELM:
    torch.manual_seed(seed)
    cfg = ELMConfig(spaces=SPACES, base_model=str(lm_dir), **config)
    return ELM.from_base(cfg)


@pytest.fixture
def elm(tiny_lm_dir) -> ELM:
    return make_elm(tiny_lm_dir)


def examples() -> list[Example]:
    """Different prompt and target lengths, one to three slots from all three spaces."""
    summary = render_elm_prompt(get_task("summary"))
    return [
        Example(summary, [(SEM, vec(SEM, 1))], "A quiet heist film about loyalty.", ("movie",)),
        Example(f"Compare {EMB_TOKEN} with {EMB_TOKEN} for the user {EMB_TOKEN}.",
                [(BEH, vec(BEH, 2)), (SEM, vec(SEM, 3)), (USR, vec(USR, 4))], "Both.", ("movie", "movie", "user")),
        Example(render_elm_prompt(get_task("user_profile")), [(USR, vec(USR, 5))],
                "This user enjoys slow science fiction, old westerns and anything with a twist ending.", ("user",)),
    ]


def captured_inputs_embeds(elm: ELM, batch: dict) -> torch.Tensor:
    """What the LM really receives in forward (a hook, so the test cannot be fooled by ELM.embed)."""
    seen = {}

    def hook(_module, _args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"].detach().clone()

    handle = elm.lm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            elm(**batch)
    finally:
        handle.remove()
    return seen["embeds"]


# -----------------------------------------------------------------------------
# adapter


def test_adapter_config_strings_and_validation():
    c = AdapterConfig.from_string("mlp2x_gelu", in_dim=384, out_dim=576)
    assert (c.depth, c.activation, c.width, c.hidden, c.soft_tokens) == (2, "gelu", None, 576, 4)
    assert AdapterConfig.from_string("linear", in_dim=3, out_dim=5).depth == 1
    c3 = AdapterConfig.from_string("mlp3x_relu", in_dim=3, out_dim=5, width=7, soft_tokens=2, input_norm="l2")
    assert (c3.depth, c3.activation, c3.width, c3.soft_tokens, c3.input_norm) == (3, "relu", 7, 2, "l2")
    assert AdapterConfig.from_dict(json.loads(json.dumps(c3.to_dict()))) == c3
    for spec in ("mlp2x_swish", "conv", "mlp2x", "MLP2X_GELU", "mlp0x_gelu", ""):
        with pytest.raises(ValueError, match="adapter spec|AdapterConfig"):
            AdapterConfig.from_string(spec, in_dim=3, out_dim=5)
    bad = {"in_dim": 0, "out_dim": -1, "depth": 0, "width": 0, "activation": "swish", "input_norm": "batchnorm",
           "soft_tokens": 0, "dropout": 1.0}
    for name, value in bad.items():
        kw = {"in_dim": 3, "out_dim": 5, name: value}
        with pytest.raises(ValueError, match=f"AdapterConfig.{name}="):
            AdapterConfig(**kw)
    with pytest.raises(ValueError, match="unknown field"):
        AdapterConfig.from_dict({"in_dim": 3, "out_dim": 5, "layers": 2})


@pytest.mark.parametrize("norm", ["layernorm", "l2", "none"])
@pytest.mark.parametrize("spec", ["linear", "mlp2x_gelu", "mlp3x_silu"])
def test_adapter_shape_and_initial_scale(norm, spec):
    torch.manual_seed(0)
    cfg = AdapterConfig.from_string(spec, in_dim=32, out_dim=48, input_norm=norm, soft_tokens=3)
    # WALS-like vectors: norms spread over four orders of magnitude.
    x = torch.randn(200, 32) * torch.logspace(-2, 2, 200)[:, None]
    target = 0.136  # SmolLM2-135M's input embedding RMS
    adapter = build_adapter(cfg, target_rms=target, sample=x[:100] if norm == "none" else None)
    out = adapter(x[100:] if norm != "none" else x[:100])
    assert out.shape == (100, 3, 48)
    rms = out.pow(2).mean().sqrt().item()
    assert 0.7 * target < rms < 1.4 * target, f"initial RMS {rms} far from {target}"
    # Without calibration the scale is arbitrary; match_scale fixes it later from an embedding matrix.
    raw = build_adapter(cfg)
    emb = torch.randn(1000, 48) * 0.02
    raw.match_scale(embedding_rms(emb), sample=x[:100])
    assert math.isclose(raw(x[:100]).pow(2).mean().sqrt().item(), 0.02, rel_tol=0.05)
    with pytest.raises(ValueError, match="shape"):
        adapter(torch.randn(4, 31))


# -----------------------------------------------------------------------------
# config


def test_elm_config_json_round_trip_and_validation():
    cfg = ELMConfig(spaces=SPACES, base_model="some/model", adapter={"depth": 1, "soft_tokens": 2},
                    system_prompt=None, max_length=64)
    again = ELMConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and isinstance(again.spaces[0], SpaceSpec) and again.soft_tokens == 2
    assert ELMConfig(spaces=[{"name": "a", "kind": "user", "dim": 3}]).spaces == (SpaceSpec("a", "user", 3),)
    cases = [
        (dict(spaces=()), "empty"),
        (dict(spaces=(SPACES[0], SPACES[0])), "duplicate"),
        (dict(spaces=(SpaceSpec("x", "movie", 3),), adapter={"in_dim": 3}), "per-space"),
        (dict(spaces=(SpaceSpec("x", "movie", 3),), adapter={"activation": "swish"}), "activation"),
        (dict(spaces=(SpaceSpec("x", "movie", 3),), max_length=2), "max_length"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            ELMConfig(**kw)
    for kw, msg in [(dict(name="Bad Name", kind="movie", dim=3), "snake_case"),
                    (dict(name="x", kind="book", dim=3), "kind"), (dict(name="x", kind="movie", dim=0), "dim")]:
        with pytest.raises(ValueError, match=msg):
            SpaceSpec(**kw)


# -----------------------------------------------------------------------------
# splicing, order, padding, labels


def test_slots_carry_adapter_output_and_other_positions_are_token_embeddings(elm):
    batch = elm.collator()(examples()[:1])
    embeds = captured_inputs_embeds(elm, batch)
    mask = batch["slot_mask"]
    assert mask.sum() == elm.config.soft_tokens == 4
    with torch.no_grad():
        expected_slot = elm.adapters[SEM](vec(SEM, 1)[None])[0]  # [4, hidden]
        tokens = elm.lm.get_input_embeddings()(batch["input_ids"])
    torch.testing.assert_close(embeds[mask], expected_slot, rtol=0, atol=0)
    torch.testing.assert_close(embeds[~mask], tokens[~mask], rtol=0, atol=0)
    # The slot sits where the placeholder was: between "movie" and " in a few sentences."
    ids = batch["input_ids"][0].tolist()
    first = mask[0].nonzero()[0, 0].item()
    assert elm.tokenizer.decode(ids[:first]).endswith("Summarize the movie ")
    assert elm.tokenizer.decode(ids[first + 4:]).startswith(" in a few sentences.")


def test_several_slots_from_different_spaces_land_in_order(elm):
    exs = examples()
    batch = elm.collator()(exs)
    assert batch["slot_space"].tolist() == [0, 1, 0, 2, 2]  # SEM | BEH, SEM, USR | USR, row-major
    assert {k: v.shape[0] for k, v in batch["slot_vectors"].items()} == {SEM: 2, BEH: 1, USR: 2}
    embeds = captured_inputs_embeds(elm, batch)
    groups = embeds[batch["slot_mask"]].view(-1, 4, embeds.shape[-1])
    with torch.no_grad():
        for k, (space, v) in enumerate(p for ex in exs for p in ex.vectors):
            torch.testing.assert_close(groups[k], elm.adapters[space](v[None])[0], rtol=1e-5, atol=1e-7)


def per_example(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor):
    """(logits at real positions, mean next-token loss) of one row."""
    real = mask.bool()
    lg, lb = logits[real], labels[real]
    loss = torch.nn.functional.cross_entropy(lg[:-1], lb[1:], ignore_index=IGNORE_INDEX)
    return lg, loss


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_gives_the_same_logits_and_loss_as_unbatched(elm, side):
    exs = examples()
    batch = elm.collator(padding_side=side)(exs)
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1  # really padded
    with torch.no_grad():
        logits = elm(**batch).logits
        for b, ex in enumerate(exs):
            single = elm.collator()([ex])
            out = elm(**single)
            lg, loss = per_example(logits[b], batch["labels"][b], batch["attention_mask"][b])
            torch.testing.assert_close(lg, out.logits[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(loss, out.loss, rtol=1e-4, atol=1e-5)


def test_target_logits_only_gives_the_same_loss_and_gradients(elm):
    batch = elm.collator(padding_side="left")(examples())
    elm.unfreeze_base()
    full = elm(**batch)
    full.loss.backward()
    ref = {n: p.grad.clone() for n, p in elm.named_parameters() if p.grad is not None}
    elm.zero_grad()
    part = elm(**batch, target_logits_only=True)
    part.loss.backward()
    n_labels = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert part.logits.shape == (n_labels, full.logits.shape[-1])
    torch.testing.assert_close(part.loss, full.loss, rtol=1e-5, atol=1e-6)
    for n, p in elm.named_parameters():
        if n in ref:
            torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6)
    elm.zero_grad()


def test_labels_are_the_target_and_end_token_only(elm):
    exs = examples()
    for side in ("right", "left"):
        batch = elm.collator(padding_side=side)(exs)
        for b, ex in enumerate(exs):
            labelled = (batch["labels"][b] != IGNORE_INDEX).nonzero()[:, 0]
            # contiguous, and the very last real tokens of the row
            assert labelled.tolist() == list(range(labelled[0].item(), labelled[-1].item() + 1))
            last_real = batch["attention_mask"][b].nonzero()[-1, 0].item()
            assert labelled[-1].item() == last_real
            ids = batch["labels"][b][labelled].tolist()
            assert ids[-1] == elm.tokenizer.convert_tokens_to_ids("<|im_end|>")
            assert elm.tokenizer.decode(ids) == ex.target + "<|im_end|>"
            assert torch.equal(batch["input_ids"][b][labelled], batch["labels"][b][labelled])
            # pad id == end id in SmolLM2: padding must still be unlabelled
            pad = batch["attention_mask"][b] == 0
            assert (batch["labels"][b][pad] == IGNORE_INDEX).all()
            assert not batch["slot_mask"][b][labelled].any()
    # Truncation cuts the target (and with it the end token), never the slots.
    short = elm.collator()(examples()[2:])
    n_prompt = int((short["labels"][0] == IGNORE_INDEX).sum())
    cut = elm.collator(max_length=n_prompt + 3)(examples()[2:])
    assert cut["input_ids"].shape[1] == n_prompt + 3 and int((cut["labels"] != IGNORE_INDEX).sum()) == 3
    assert cut["slot_mask"].sum() == 4
    with pytest.raises(ELMInputError, match="prompt alone is .* over max_length 10"):
        elm.collator(max_length=10)(examples()[:1])
    # Generation batches carry no labels.
    assert "labels" not in elm.collator("left")([Example(ex.prompt, ex.vectors) for ex in exs])


# -----------------------------------------------------------------------------
# training stages


def _train_step(elm: ELM) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in elm.named_parameters()}
    elm.train()
    opt = torch.optim.AdamW([p for p in elm.parameters() if p.requires_grad], lr=1e-2)
    elm(**elm.collator()(examples())).loss.backward()
    opt.step()
    return {n: not torch.equal(before[n], p) for n, p in elm.named_parameters()}


def test_freeze_base_trains_only_adapters_unfreeze_trains_everything(tiny_lm_dir):
    elm = make_elm(tiny_lm_dir)
    elm.freeze_base()
    assert {id(p) for p in elm.parameters() if p.requires_grad} == {id(p) for p in elm.adapter_parameters()}
    changed = _train_step(elm)
    assert all(changed[n] for n in changed if n.startswith("adapters."))
    assert not any(changed[n] for n in changed if n.startswith("lm."))

    elm = make_elm(tiny_lm_dir)
    elm.freeze_base()
    elm.unfreeze_base()
    changed = _train_step(elm)
    assert all(changed.values()), [n for n, c in changed.items() if not c]
    assert len(elm.base_parameters()) + len(elm.adapter_parameters()) == len(changed)


# -----------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("include_base", [False, True])
def test_save_load_round_trip_gives_identical_logits(tiny_lm_dir, tmp_path, include_base):
    elm = make_elm(tiny_lm_dir, adapter={"depth": 2, "soft_tokens": 4, "input_norm": "l2"})
    elm.unfreeze_base()
    _train_step(elm)  # so neither the adapters nor (for include_base) the LM are at their initial values
    elm.eval()
    batch = elm.collator()(examples())
    with torch.no_grad():
        ref = elm(**batch).logits
    folder = elm.save(tmp_path / "elm", include_base=include_base)
    assert (folder / "base" / "model.safetensors").exists() == include_base
    assert not list(tmp_path.glob(".tmp-*")) and not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    loaded = ELM.load(folder)
    assert loaded.config == elm.config and not loaded.training
    with torch.no_grad():
        logits = loaded(**loaded.collator()(examples())).logits
    if include_base:
        torch.testing.assert_close(logits, ref, rtol=0, atol=0)
    else:  # the base was reloaded from config.base_model: trained adapters, untouched base
        base_only = make_elm(tiny_lm_dir, adapter=elm.config.adapter)
        base_only.adapters.load_state_dict(elm.adapters.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(logits, base_only(**batch).logits, rtol=0, atol=0)
    # Saving over an existing folder replaces it whole.
    elm.save(folder, include_base=False)
    assert not (folder / "base").exists() and not list(tmp_path.glob(".old-*"))


def test_load_errors_name_the_file(elm, tmp_path):
    folder = elm.save(tmp_path / "elm", include_base=False)
    with pytest.raises(ELMLoadError, match="not a folder"):
        ELM.load(tmp_path / "nowhere")
    weights = folder / "adapters.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ELMLoadError, match="adapters.safetensors is corrupt"):
        ELM.load(folder)
    weights.unlink()
    with pytest.raises(ELMLoadError, match="adapters.safetensors is missing"):
        ELM.load(folder)
    weights.write_bytes(good)
    cfg = folder / "elm_config.json"
    meta = json.loads(cfg.read_text())
    meta["config"]["adapter"] = {"soft_tokens": 2}  # adapters no longer fit the weights
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ELMLoadError, match="adapters.safetensors does not match"):
        ELM.load(folder)
    cfg.write_text("{not json")
    with pytest.raises(ELMLoadError, match="elm_config.json is corrupt"):
        ELM.load(folder)
    cfg.unlink()
    with pytest.raises(ELMLoadError, match="elm_config.json is missing"):
        ELM.load(folder)


# -----------------------------------------------------------------------------
# generation


def test_generate_batched_equals_one_at_a_time(elm):
    exs = examples()
    prompts, vectors = [ex.prompt for ex in exs], [ex.vectors for ex in exs]
    # A random LM with tied embeddings echoes its last token ("\n") forever; banning repeats (a
    # generate_kwargs pass-through) makes its greedy text vary.
    kw = dict(max_new_tokens=8, no_repeat_ngram_size=1, repetition_penalty=1.3)
    batched = elm.generate(prompts, vectors, batch_size=3, **kw)
    single = [elm.generate([p], [v], **kw)[0] for p, v in zip(prompts, vectors)]
    assert all(isinstance(t, str) for t in batched)
    assert batched == single
    assert any(batched), "greedy text is empty: the comparison would prove nothing"
    assert elm.generate(prompts[::-1], vectors[::-1], batch_size=2, **kw) == batched[::-1]


def test_vector_guidance_runs_the_null_rows_exactly(elm):
    """Guidance mixes the next-token log-probs of the real vectors with those of the null vectors, whose rows
    run beside generate with their own cache. Two exact consequences, over several steps and left padding:
    at scale 0 the text is the null vectors' own text, and when the null is the input itself any scale leaves
    the text unchanged. Both fail if the null rows' positions, padding or cache drift from generate's."""
    exs = examples()
    prompts, vectors = [ex.prompt for ex in exs], [ex.vectors for ex in exs]
    nulls = {SEM: vec(SEM, 90), BEH: vec(BEH, 91), USR: vec(USR, 92)}
    null_rows = [[(s, nulls[s]) for s, _ in v] for v in vectors]
    kw = dict(max_new_tokens=8, no_repeat_ngram_size=1, batch_size=3)
    plain, of_null = elm.generate(prompts, vectors, **kw), elm.generate(prompts, null_rows, **kw)
    assert plain != of_null, "the null vectors' text must differ, or scale 0 would prove nothing"
    assert elm.generate(prompts, vectors, guidance_scale=0.0, null_vectors=nulls, **kw) == of_null
    assert elm.generate(prompts, null_rows, guidance_scale=3.0, null_vectors=nulls, **kw) == of_null
    assert elm.generate(prompts, vectors, guidance_scale=1.0, **kw) == plain  # 1 = off, needs no null
    guided = elm.generate(prompts, vectors, guidance_scale=3.0, null_vectors=nulls, **kw)
    assert guided != plain
    assert elm.generate(prompts[::-1], vectors[::-1], guidance_scale=3.0, null_vectors=nulls,
                        **{**kw, "batch_size": 1}) == guided[::-1]
    # One scale per prompt: an unguided row in a guided batch is decoded as if alone.
    mixed = elm.generate(prompts, vectors, guidance_scale=[3.0, 1.0, 3.0], null_vectors=nulls, **kw)
    assert mixed == [guided[0], plain[1], guided[2]]
    # Greedy runs the null rows in the same batch (PairedGuidance); the separate pass sampling uses
    # (VectorGuidance) must choose the same tokens.
    from transformers import LogitsProcessorList

    from elm.model.guidance import VectorGuidance

    collate = elm.collator(padding_side="left")
    order = sorted(range(len(exs)), key=lambda i: len(prompts[i]))  # generate's batch order
    batch = collate([Example(exs[i].prompt, vectors[i], None, exs[i].slots) for i in order])
    nb = collate([Example(exs[i].prompt, null_rows[i], None, exs[i].slots) for i in order])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing `no_repeat_ngram_size` with `inputs_embeds`")
        embeds, null = (elm.embed(b["input_ids"], b["slot_mask"], b["slot_vectors"], b["slot_space"]) for b in (batch, nb))
        new = elm.lm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"], max_new_tokens=8,
                              no_repeat_ngram_size=1, eos_token_id=[elm.end_id], pad_token_id=collate.pad_id,
                              logits_processor=LogitsProcessorList([
                                  VectorGuidance(elm.lm, null, batch["attention_mask"], 3.0)]))
    separate = [t.strip() for t in elm.tokenizer.batch_decode(new, skip_special_tokens=True)]
    assert separate == [guided[i] for i in order]
    # Sampling: at scale 0 the guided distribution is the null rows', so with one seed the same draws.
    sample = dict(kw, do_sample=True, temperature=1.5)
    torch.manual_seed(7)
    sampled_null = elm.generate(prompts, null_rows, **sample)
    torch.manual_seed(7)
    assert elm.generate(prompts, vectors, guidance_scale=0.0, null_vectors=nulls, **sample) == sampled_null
    with pytest.raises(ELMInputError, match=r"needs a null vector for space\(s\) \['behavioral_users'\]"):
        elm.generate(prompts, vectors, guidance_scale=2.0, null_vectors={SEM: nulls[SEM], BEH: nulls[BEH]}, **kw)
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        elm.generate(prompts, vectors, guidance_scale=-1.0, null_vectors=nulls, **kw)


# -----------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_clear_errors(elm):
    collate = elm.collator()
    ok = examples()[1]
    cases = [
        (Example(ok.prompt, [(SEM, vec(SEM, 0))] * 2), r"example 0: the prompt has 3 <emb> placeholder\(s\) but 2"),
        (Example("No slot here.", [(SEM, vec(SEM, 0))]), "has 0 <emb>"),
        (Example(ok.prompt, [ok.vectors[0], (SEM, torch.randn(5)), ok.vectors[2]]),
         r"example 0, slot 1 \(space 'semantic_movies'\): vector has shape \[5\], the space expects \[16\]"),
        (Example(ok.prompt, [ok.vectors[0], ok.vectors[1], (USR, torch.tensor([0, 1, float("nan"), 0, 0, 0]))]),
         r"slot 2 \(space 'behavioral_users'\): vector has NaN/inf at position\(s\) \[2\]"),
        (Example(ok.prompt, [ok.vectors[0], (SEM, torch.full((16,), float("inf"))), ok.vectors[2]]), "NaN/inf"),
        (Example(ok.prompt, [("wals", vec(BEH, 0)), ok.vectors[1], ok.vectors[2]]),
         "slot 0: unknown embedding space 'wals'; this ELM reads semantic_movies, behavioral_movies"),
        (Example(ok.prompt, [(USR, vec(USR, 0)), ok.vectors[1], ok.vectors[2]], None, ("movie", "movie", "user")),
         "slot 0 .*the slot takes a movie vector but space 'behavioral_users' holds user vectors"),
        (Example(ok.prompt, ok.vectors, None, ("movie",)), "slots .* 1 kind"),
        (Example(ok.prompt, [ok.vectors[0], (SEM, "abc"), ok.vectors[2]]), "not a numeric vector"),
    ]
    for ex, msg in cases:
        with pytest.raises(ELMInputError, match=msg):
            collate([ex])
    with pytest.raises(ELMInputError, match="all have a target"):
        collate([examples()[0], Example(ok.prompt, ok.vectors)])
    with pytest.raises(ELMInputError, match="example 1, slot 0"):  # the index names the offending example
        collate([examples()[0], Example(ok.prompt, [(SEM, vec(USR, 0))] + list(ok.vectors[1:]), "target")])
    with pytest.raises(ELMInputError, match="2 prompts but 1 vector"):
        elm.generate([ok.prompt, ok.prompt], [ok.vectors])
    with pytest.raises(ELMInputError, match="placeholder"):  # generate validates too
        elm.generate([ok.prompt], [ok.vectors[:1]])
    system = make_elm(elm.config.base_model, system_prompt=f"Read {EMB_TOKEN} vectors.")
    with pytest.raises(ELMInputError, match="system prompt"):
        system.collator()(examples()[:1])
    # Tensors that skip the collator are still checked against each other.
    batch = collate(examples())
    with pytest.raises(ELMInputError, match="slot_mask marks"):
        elm(**{**batch, "slot_space": batch["slot_space"][:-1]})
    with pytest.raises(ELMInputError, match="slot_vectors\\['semantic_movies'\\] has 1 vectors"):
        elm(**{**batch, "slot_vectors": {**batch["slot_vectors"], SEM: batch["slot_vectors"][SEM][:1]}})


# -----------------------------------------------------------------------------
# the real model


@pytest.mark.slow
def test_real_smollm_forward_backward_stage1(smollm_dir):
    lm, tok = load_causal_lm(str(smollm_dir))
    torch.manual_seed(0)
    cfg = ELMConfig(spaces=(SpaceSpec(SEM, "movie", DIMS[SEM]),), base_model=str(smollm_dir))
    elm = ELM.from_base(cfg, lm=lm, tokenizer=tok)
    elm.freeze_base()
    elm.train()
    batch = elm.collator()(examples()[:1])
    out = elm(**batch)
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and out.loss.item() < 15
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in elm.adapter_parameters())
    assert all(p.grad is None for p in elm.base_parameters())
    # The soft tokens start at the scale of SmolLM2's own token embeddings (about 0.136).
    with torch.no_grad():
        soft = elm.adapters[SEM](torch.randn(64, DIMS[SEM]))
    target = embedding_rms(lm.get_input_embeddings().weight)
    assert 0.7 * target < soft.pow(2).mean().sqrt().item() < 1.4 * target
