"""ELM training and generation speed on SmolLM2-135M's shape, against plain transformers loops in the same run.

    .venv/bin/python bench/bench_train.py [--batch-size 8] [--seq-len 128] [--warmup 1] [--steps 3]
                                          [--gen-prompts 8] [--max-new-tokens 48] [--matmul-size 2048]
    .venv/bin/python bench/bench_train.py --steps 2 --warmup 1 --max-new-tokens 16   # smoke run

The LM is SmolLM2-135M-Instruct's architecture and tokenizer with random weights (base_model.random_model_like:
same speed as the real one), written to a temp folder; the packaged model it is shaped after is converted
into $ELM_ARTIFACTS_DIR if set, else into a temp ArtifactStore (about 20 s). Float32, torch's default threads.

Training rows (tokens/s = batch x seq-len tokens per optimizer step, over --steps steps after --warmup):
  stage 1 (ELM)   elm.train.loop's building blocks as fit() runs them, minus accelerate (on CPU, cpu.yaml is one
                  process, no mixed precision: prepare() wraps nothing): ELM.from_base + freeze_base, AdamW
                  from _optimizer, each step collating Examples picked by batch_indices (chat template,
                  one <emb> slot or two, 4 soft tokens each, targets cut at --seq-len so every row is exactly
                  --seq-len tokens), forward, backward, clip_grad_norm_ 1.0, AdamW + LR-schedule step.
  baseline        the same LlamaForCausalLM, frozen, trained by a minimal hand-written loop: 4 trainable
                  "soft prompt" vectors (prompt tuning) overwrite the first 4 input embeddings
                  (inputs_embeds = cat(soft, embed(input_ids)[:, 4:])), loss on labels = input_ids of the
                  same [batch, seq-len] shape, backward through the whole frozen LM to them, AdamW on them.
                  The same work as stage 1 without the adapter MLP, the collator and the clipping.
  stage 2 (ELM)   as stage 1 after unfreeze_base: AdamW over every LM weight and the adapter.
  baseline        model(input_ids, labels=input_ids).loss.backward(); AdamW(model.parameters()).step().
Steps of an ELM row and its baseline alternate (order flipped each round) so load from other processes
hits both alike.

Generation rows: the same --gen-prompts ELM prompts (task prompts with random 384-d "movie" vectors),
greedy, exactly --max-new-tokens new tokens each (min_new_tokens = max_new_tokens: a random model rarely
stops, this makes sure none does). The plain baseline runs model.generate on the very token ids the ELM
collator built for each prompt (slot positions hold the pad id there), so prompt lengths are identical.

FLOPs: N = the matmul parameters (30 layers' q/k/v/o/gate/up/down + the lm_head; the embedding lookup
costs nothing; SmolLM2 ties lm_head to it). Per token: stage 2 6N (forward 2N, backward 4N: input and
weight gradients), stage 1 4N (backward needs only input gradients, about as costly as the forward),
generation 2N per new token and 2(N - lm_head) per prompt token (logits only for the last position).
Attention scores (QK^T, AV: ~3% of the forward at 128 tokens) and the adapter (<1%) are left out.
"of peak" = achieved FLOP/s / the best fp32 torch.matmul rate measured here (before and after).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# What elm.train.stage.run_logged gives the training process: passive OpenMP waits (spinning threads slow a
# shared CPU badly) and no tokenizer threads. Set before torch loads; both paths run under it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the one-time GGUF conversion's progress bar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the a heist crew city night plan goes wrong when an old friend returns with secrets that nobody "
         "expected and every choice costs something small town detective storm river love war family music "
         "ship island letter train dream memory winter summer stranger promise").split()


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def matmul_gflops(n: int, reps: int) -> float:
    """Best fp32 torch.matmul rate of n x n by n x n (2 n^3 FLOPs each) over reps runs."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: thread pool, MKL kernel selection
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8, help="training examples per step (default 8)")
    ap.add_argument("--seq-len", type=int, default=128, help="tokens per training row (default 128)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per training path (default 1)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per training path (default 3)")
    ap.add_argument("--gen-prompts", type=int, default=8, help="prompts, and the batched path's batch (default 8)")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="new tokens per prompt (default 48)")
    ap.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul peak (default 2048)")
    ap.add_argument("--matmul-reps", type=int, default=5, help="timed matmuls, best kept (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if min(a.batch_size, a.steps, a.gen_prompts, a.max_new_tokens, a.matmul_reps) < 1 or a.warmup < 0:
        ap.error("sizes and counts must be >= 1 (--warmup >= 0)")

    import numpy as np
    import torch
    import transformers

    from elm.artifacts import ArtifactStore
    from elm.model.base_lm import DEFAULT_BASE_MODEL, load_causal_lm, random_model_like
    from elm.model.batch import Example
    from elm.model.elm import ELM
    from elm.model.config import SpaceSpec
    from elm.settings import ARTIFACTS_ENV
    from elm.synth.catalog import MOVIE_TASKS, get_task, render_elm_prompt
    from elm.train.config import TrainConfig
    from elm.train.data import batch_indices
    from elm.train.loop import _optimizer, _setup_stage, _to_device

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"{os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()} "
          f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), load average {load()} (1/5/15 min; "
          "other processes share this CPU)", flush=True)

    peak0 = matmul_gflops(a.matmul_size, a.matmul_reps)
    print(f"fp32 matmul {a.matmul_size}x{a.matmul_size}: {peak0:.1f} GFLOP/s (best of {a.matmul_reps})", flush=True)

    tmp = tempfile.TemporaryDirectory(prefix="bench-train-")
    store_dir = os.environ.get(ARTIFACTS_ENV) or str(Path(tmp.name) / "artifacts")
    t = time.perf_counter()
    model_path = str(random_model_like(DEFAULT_BASE_MODEL, Path(tmp.name) / "model",
                                       store=ArtifactStore(store_dir), seed=a.seed))
    print(f"random {DEFAULT_BASE_MODEL}-shaped model in {time.perf_counter() - t:.1f}s "
          f"(store {store_dir})", flush=True)

    # -- data: task prompts with random movie vectors; targets long enough to be cut at --seq-len ----------
    rng = np.random.default_rng(a.seed)
    space = SpaceSpec("semantic_movies", "movie", 384)
    tasks = [get_task(n) for n in MOVIE_TASKS]

    def example(i: int, target: bool) -> Example:
        task = tasks[i % len(tasks)]
        vecs = [(space.name, rng.standard_normal(space.dim).astype(np.float32)) for _ in task.slots]
        text = " ".join(rng.choice(WORDS, a.seq_len)) if target else None
        return Example(render_elm_prompt(task), vecs, text, task.slots)

    train_ex = [example(i, True) for i in range(max(64, a.batch_size))]
    gen_ex = [example(i, False) for i in range(a.gen_prompts)]
    samples = {space.name: rng.standard_normal((256, space.dim)).astype(np.float32)}

    base_cfg = TrainConfig()
    total = a.warmup + a.steps
    cfg = TrainConfig(base_model=model_path, max_length=a.seq_len, seed=a.seed,
                      stage1=replace(base_cfg.stage1, steps=total, batch_size=a.batch_size),
                      stage2=replace(base_cfg.stage2, steps=total, batch_size=a.batch_size))
    torch.manual_seed(a.seed)
    elm = ELM.from_base(cfg.elm_config((space,)), samples=samples)
    elm.train()
    collate = elm.collator()
    lm, _ = load_causal_lm(model_path)  # the baseline: a second copy of the same weights
    lm.train()
    probe = collate(train_ex[: a.batch_size])
    if tuple(probe["input_ids"].shape) != (a.batch_size, a.seq_len) or not bool(probe["attention_mask"].all()):
        raise SystemExit(f"collated batch is {list(probe['input_ids'].shape)}, not [{a.batch_size}, {a.seq_len}] "
                         "without padding: --seq-len too small for the prompts?")

    # Matmul parameter count (see the docstring): every nn.Linear of the LM, lm_head included.
    n_head = lm.get_output_embeddings().weight.numel()
    n_mm = sum(m.weight.numel() for m in lm.modules() if isinstance(m, torch.nn.Linear))
    n_all = sum(p.numel() for p in lm.parameters())
    print(f"{type(lm).__name__}: {n_all / 1e6:.1f}M parameters, N = {n_mm / 1e6:.1f}M in matmuls "
          f"(lm_head {n_head / 1e6:.1f}M, tied: {lm.config.tie_word_embeddings}); "
          f"adapter {sum(p.numel() for p in elm.adapters.parameters()) / 1e6:.2f}M", flush=True)

    ids = torch.randint(0, lm.config.vocab_size, (a.batch_size, a.seq_len),
                        generator=torch.Generator().manual_seed(a.seed))
    tokens_per_step = a.batch_size * a.seq_len

    # -- training paths: each returns the tokens of one optimizer step -------------------------------------
    def elm_stepper(n: int):
        sc = cfg.stage(n)
        _setup_stage(elm, n, sc)
        opt, sched = _optimizer(elm, sc)
        trainable = [p for p in elm.parameters() if p.requires_grad]
        counter = iter(range(10 ** 9))

        def step() -> int:
            idx = batch_indices(len(train_ex), sc.batch_size, cfg.seed, n, next(counter))
            batch = _to_device(collate([train_ex[i] for i in idx]), elm.device)
            loss = elm(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, sc.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            return int(batch["attention_mask"].sum())
        return step

    def baseline_stage1():
        lm.requires_grad_(False)
        emb = lm.get_input_embeddings()
        soft = torch.nn.Parameter(torch.randn(4, emb.embedding_dim) * emb.weight.std())
        opt = torch.optim.AdamW([soft], lr=cfg.stage1.lr)

        def step() -> int:
            x = torch.cat([soft.expand(ids.shape[0], -1, -1), emb(ids)[:, soft.shape[0]:]], dim=1)
            loss = lm(inputs_embeds=x, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            return ids.numel()
        return step

    def baseline_stage2():
        lm.requires_grad_(True)
        opt = torch.optim.AdamW(lm.parameters(), lr=cfg.stage2.lr)

        def step() -> int:
            loss = lm(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            return ids.numel()
        return step

    train_rows = []  # (name, tokens/s, s/step, FLOP/token, baseline name)
    for n, flop_tok, base_name, base_fn in ((1, 4 * n_mm, "baseline: frozen LM, soft prompt", baseline_stage1),
                                            (2, 6 * n_mm, "baseline: full fine-tune loop", baseline_stage2)):
        name = f"stage {n} (ELM, {'adapter only' if n == 1 else 'full model'})"
        paths = {name: elm_stepper(n), base_name: base_fn()}
        secs = {k: 0.0 for k in paths}
        toks = {k: 0 for k in paths}
        for r in range(total):
            for k in list(paths)[:: 1 if r % 2 == 0 else -1]:
                t = time.perf_counter()
                got = paths[k]()
                dt = time.perf_counter() - t
                if r >= a.warmup:
                    secs[k] += dt
                    toks[k] += got
                print(f"  stage {n} step {r + 1}/{total}{' (warm-up)' if r < a.warmup else ''}: "
                      f"{k:<34} {dt:6.2f}s  load {load()}", flush=True)
        for k in paths:
            train_rows.append((k, toks[k] / secs[k], secs[k] / a.steps, flop_tok, base_name))
        del paths  # frees the optimizers' state before the next stage
    lm.requires_grad_(False)
    elm.eval()
    lm.eval()

    # -- generation ----------------------------------------------------------------------------------------
    gen_collate = elm.collator(padding_side="left")
    plain_in = [gen_collate([ex]) for ex in gen_ex]  # the ELM's token ids of each prompt, slots as pad ids
    prompt_tokens = sum(int(b["attention_mask"].sum()) for b in plain_in)
    new_total = a.gen_prompts * a.max_new_tokens
    gen_flops = 2 * (n_mm - n_head) * prompt_tokens + 2 * n_mm * new_total
    prompts, vectors = [ex.prompt for ex in gen_ex], [ex.vectors for ex in gen_ex]
    kw = dict(max_new_tokens=a.max_new_tokens, min_new_tokens=a.max_new_tokens)

    def plain_generate(batch: dict, **over) -> None:
        lm.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False,
                    pad_token_id=gen_collate.pad_id, **{**kw, **over})

    def elm_generate(idx: list[int], batch_size: int, **over) -> None:
        elm.generate([prompts[i] for i in idx], [vectors[i] for i in idx], batch_size=batch_size, **{**kw, **over})

    with torch.no_grad():  # warm-up of every path
        plain_generate(plain_in[0], max_new_tokens=4, min_new_tokens=4)
        elm_generate([0], 1, max_new_tokens=4, min_new_tokens=4)
        elm_generate(list(range(a.gen_prompts)), a.gen_prompts, max_new_tokens=4, min_new_tokens=4)

    gen_secs = {"plain model.generate, 1 prompt": 0.0, "ELM.generate, 1 prompt": 0.0}
    with torch.no_grad():
        for i in range(a.gen_prompts):  # one prompt at a time, the two paths alternating
            order = [("plain model.generate, 1 prompt", lambda: plain_generate(plain_in[i])),
                     ("ELM.generate, 1 prompt", lambda: elm_generate([i], 1))]
            for k, fn in order[:: 1 if i % 2 == 0 else -1]:
                t = time.perf_counter()
                fn()
                gen_secs[k] += time.perf_counter() - t
        print("  generation one at a time: " + ", ".join(f"{k} {s:.1f}s" for k, s in gen_secs.items())
              + f"  load {load()}", flush=True)
        b = f"batch {a.gen_prompts}"
        t = time.perf_counter()
        elm_generate(list(range(a.gen_prompts)), a.gen_prompts)
        gen_secs[f"ELM.generate, {b}"] = time.perf_counter() - t
        padded = torch.nn.utils.rnn.pad_sequence(  # left padding, like ELM.generate's batches
            [p["input_ids"][0].flip(0) for p in plain_in], batch_first=True, padding_value=gen_collate.pad_id).flip(1)
        mask = torch.nn.utils.rnn.pad_sequence(
            [p["attention_mask"][0].flip(0) for p in plain_in], batch_first=True, padding_value=0).flip(1)
        t = time.perf_counter()
        plain_generate({"input_ids": padded, "attention_mask": mask})
        gen_secs[f"plain model.generate, {b}"] = time.perf_counter() - t
        print(f"  generation batched: ELM {gen_secs[f'ELM.generate, {b}']:.1f}s, plain "
              f"{gen_secs[f'plain model.generate, {b}']:.1f}s  load {load()}", flush=True)

    peak1 = matmul_gflops(a.matmul_size, a.matmul_reps)
    peak = max(peak0, peak1)

    # -- tables --------------------------------------------------------------------------------------------
    by_name = {r[0]: r for r in train_rows}
    print(f"\nTraining: batch {a.batch_size} x {a.seq_len} tokens, {a.steps} timed steps after {a.warmup} warm-up, "
          f"float32")
    print(f"{'path':<36}{'tokens/s':>10}{'s/step':>8}{'vs baseline':>13}{'GFLOP/tok':>11}{'FLOP/s (G)':>12}"
          f"{'of matmul peak':>16}")
    for name, tps, sps, flop_tok, base_name in train_rows:
        ratio = tps / by_name[base_name][1]
        print(f"{name:<36}{tps:>10.0f}{sps:>8.2f}{ratio:>12.2f}x{flop_tok / 1e9:>11.2f}{flop_tok * tps / 1e9:>12.1f}"
              f"{flop_tok * tps / 1e9 / peak:>15.1%}")

    base_gen = gen_secs["plain model.generate, 1 prompt"]
    lengths = [int(p["attention_mask"].sum()) for p in plain_in]
    print(f"\nGeneration: {a.gen_prompts} prompts ({prompt_tokens} prompt tokens in all, {min(lengths)}-{max(lengths)} "
          f"each), greedy, {a.max_new_tokens} new tokens each")
    print(f"{'path':<36}{'seconds':>10}{'new tok/s':>11}{'vs plain 1':>12}{'FLOP/s (G)':>12}{'of matmul peak':>16}")
    for name, s in gen_secs.items():
        print(f"{name:<36}{s:>10.1f}{new_total / s:>11.1f}{base_gen / s:>11.2f}x{gen_flops / s / 1e9:>12.1f}"
              f"{gen_flops / s / 1e9 / peak:>15.1%}")

    print(f"\nmatmul peak {peak:.1f} GFLOP/s (fp32 {a.matmul_size}^2, before {peak0:.1f}, after {peak1:.1f}); "
          f"N = {n_mm / 1e6:.1f}M matmul parameters: stage 1 4N, stage 2 6N FLOPs/token, generation 2N per new "
          f"token + 2(N - lm_head) per prompt token (attention scores, adapter left out)")
    print(f"torch threads {torch.get_num_threads()} on {os.cpu_count()} cores; load average now {load()} "
          "(other processes slow every row alike; ratios are the robust part)")
    print("baselines: stage 1 = the LM frozen, 4 trainable soft-prompt vectors as the first input embeddings "
          "(prompt tuning),\n  backward through the whole LM to them; stage 2 = model(input_ids, labels).backward() "
          "+ AdamW over all weights.\n  ELM rows add what fit() does per step: collating Examples (tokenizing), "
          "the adapter, grad clipping, the LR schedule.")
    tmp.cleanup()


if __name__ == "__main__":
    main()
