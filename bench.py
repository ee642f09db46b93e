"""
Speed measurements of the project, each reported beside a baseline measured in the same run
(or, where the baseline is another codebase, beside its published figure, named as such).

    python bench.py                      # every part
    python bench.py --part search        # problem generation and the four solvers
    python bench.py --part model         # training throughput against the matmul peak
    python bench.py --part sft           # train_sft.py's loop on real demonstrations
    python bench.py --part rollout       # the engine against its reference path and simpler decoders
    python bench.py --part apr --ckpt out/sft_apr_tiny --baseline ../older   # greedy APR decoding

Parts:
- `search`: problems/s of `countdown.py` and demonstrations/s of each solver in `search.py`
  (search plus JSON serialization, as the CLI does), with 1 and 2 worker processes. The
  authors' code wrote 136 problems/s, 1,200 SoS+ and 360 APR demonstrations/s on one core of
  a 2-core virtual machine (rates reported for their code, not re-run here); the ratio against them is
  printed, together with the measured scaling from 1 to 2 workers and the time the paper's
  500,000-problem set with both kinds of demonstrations would take at the 2-worker rates.
- `sft`: training tokens/s of `train_sft.py`'s own loop (sequences, length-bucketed batches,
  AdamW) on real SoS+ and APR demonstrations of each preset's task, and the padding share.
- `rollout`: serial decoding of random weights of the `tiny` model (or `--rollout-preset`), every
  row to the limit: new tokens/s of the engine and of its reference path (`Engine(reference=True)`),
  whether their greedy texts are the same, the share of wall time outside the model's forward,
  and the fraction of the roofline; then one-row cached decoding, naive full recomputation and
  (when installed) transformers' generate(); what a join saves against re-prefilling the parent.
- `apr`: greedy APR decoding of a trained checkpoint (`--ckpt`) on `--problems` of its
  validation problems, parents waiting and children spawning: the same figures for the engine
  and its reference path, and with `--baseline` another checkout of the project (e.g. a git
  worktree of an older commit) timed in its own process on the same problems.

The roofline of a decoding run is the least time its forward passes could take here: for each
pass, the larger of the bytes it must move (every weight, each row's keys and values up to its
new length, the new ones written) over the memory bandwidth, and its FLOPs over the matmul peak,
both measured in the same run (a STREAM-like copy, a large matmul). The engine's fraction of the
roofline is that time over its wall time. On CUDA the clock is read after the GPU finishes and
the model runs in bf16.
- `model`: training tokens/s and model FLOP/s (6 per parameter per token plus attention) of a
  full training step of the `tiny` and `small` presets, beside this machine's own measured
  fp32 matmul FLOP/s, so the fraction of peak is visible.

Timings on a shared virtual machine vary by tens of percent from run to run, so each figure is
the best of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import sys
import time

import countdown
import search

# The authors' per-core rates (not re-run here: their code is not part of this project).
AUTHORS_PER_CORE = {"problems": 136.0, "sosp": 1200.0, "apr": 360.0}


def best_rate(work, count: int, repeats: int) -> float:
    """Items per second of `work()` (which handles `count` items), best of `repeats` runs."""
    best = 0.0
    for _ in range(repeats):
        countdown._solve_sorted.cache_clear()  # a repeat must not reuse the last run's solutions
        start = time.perf_counter()
        work()
        best = max(best, count / (time.perf_counter() - start))
    return best


def bench_search(n: int, repeats: int) -> None:
    print(f"== search: {n:,} problems per measurement, best of {repeats}")
    rows = []
    for workers in (1, 2):
        rate = best_rate(lambda: list(countdown.generate_problems(n, seed=1, split="train", workers=workers)),
                         n, repeats)
        rows.append(("problems", workers, rate))
    problems = list(countdown.generate_problems(n, seed=1, split="train"))
    for mode in ("dfs", "bfs", "sosp", "apr"):
        for workers in (1, 2):
            rate = best_rate(lambda: list(search.demonstrate_all(problems, mode, workers=workers, as_json=True)),
                             n, repeats)
            rows.append((mode, workers, rate))

    rates = {(what, workers): rate for what, workers, rate in rows}
    print(f"{'what':<10}{'1 worker/s':>12}{'2 workers/s':>13}{'scaling':>9}{'authors/core':>14}{'x authors':>11}")
    for what in ("problems", "dfs", "bfs", "sosp", "apr"):
        one, two = rates[(what, 1)], rates[(what, 2)]
        authors = AUTHORS_PER_CORE.get(what)
        extra = f"{authors:>14,.0f}{one / authors:>10.1f}x" if authors else ""
        print(f"{what:<10}{one:>12,.0f}{two:>13,.0f}{two / one:>8.2f}x{extra}")
    minutes = sum(500_000 / rates[(what, 2)] for what in ("problems", "sosp", "apr")) / 60
    print(f"paper-sized data (500,000 problems + SoS+ and APR demonstrations) at the 2-worker rates: "
          f"{minutes:.1f} min")


def matmul_peak(device=None, size: int = 1024, seconds: float = 2.0) -> float:
    """The machine's matmul FLOP/s in the precision the model runs in (fp32 on a CPU, bf16 on
    CUDA): a square matmul repeated for about `seconds`."""
    import torch
    device = torch.device(device or "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    size = 8192 if device.type == "cuda" else size
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    clock = device_clock(device)
    a @ b  # warm up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = clock()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * size ** 3 / (clock() - start))
    return best


def bench_model(presets: list[str], steps: int, batch_tokens: int) -> None:
    """Training tokens/s and model FLOP/s of a full step (forward, backward, AdamW) on random
    tokens at full context, beside the measured matmul peak of this machine."""
    import torch
    import model as M
    from tokenizer import Tokenizer
    device = M.pick_device()
    peak = matmul_peak(device) if device.type == "cpu" else None
    print(f"== model: training step on {device.type}, {torch.get_num_threads()} threads"
          + (f"; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s" if peak else ""))
    print(f"{'preset':<8}{'params':>9}{'seq':>6}{'batch':>7}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}")
    vocab = Tokenizer().vocab_size
    for name in presets:
        config = M.preset(name, vocab_size=vocab)
        seq = min(config.context, 1024) if device.type == "cpu" else config.context
        batch = max(1, batch_tokens // seq)
        torch.manual_seed(0)
        model = M.GPT(config).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        x = torch.randint(0, vocab, (batch, seq + 1), device=device)

        def step():
            with M.autocast(device):
                loss = model(x[:, :-1], x[:, 1:])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()  # the clock stops when the GPU is done, not when work is queued
        step()  # warm up
        rate = best_rate(lambda: [step() for _ in range(steps)], steps * batch * seq, repeats=2)
        flops = rate * model.flops_per_token(seq)
        share = f"{flops / peak:>8.0%}" if peak else ""
        print(f"{name:<8}{model.num_params() / 1e6:>8.1f}M{seq:>6}{batch:>7}{rate:>10,.0f}{flops / 1e9:>9.1f}{share}")


def hf_generate_rate(config, prompts: list[list[int]], new_tokens: int, device, clock) -> float | None:
    """New tokens/s of transformers' greedy generate() on a random Llama of the same shape as
    ours, the same prompts left-padded into one batch; None when transformers is not installed
    (it is not a dependency of this project)."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        return None
    import torch
    hf_config = LlamaConfig(vocab_size=config.vocab_size, hidden_size=config.n_embd,
                            intermediate_size=config.mlp_hidden, num_hidden_layers=config.n_layer,
                            num_attention_heads=config.n_head, num_key_value_heads=config.n_head,
                            max_position_embeddings=config.context, rope_theta=config.rope_theta,
                            tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    torch.manual_seed(0)
    # bf16 weights on CUDA, as our model runs there under autocast
    hf = LlamaForCausalLM(hf_config).to(device, dtype=torch.bfloat16 if device.type == "cuda" else None).eval()
    width = max(map(len, prompts))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    attention = torch.zeros(len(prompts), width, dtype=torch.long)
    for b, prompt in enumerate(prompts):
        ids[b, width - len(prompt):] = torch.tensor(prompt)
        attention[b, width - len(prompt):] = 1
    ids, attention = ids.to(device), attention.to(device)
    start = clock()
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=attention, max_new_tokens=new_tokens,
                          min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    return (out.shape[1] - width) * len(prompts) / (clock() - start)


def device_clock(device):
    """Wall time once the GPU's queued work is done (a CPU runs it as it goes)."""
    import torch

    def clock():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()
    return clock


def stream_bandwidth(device=None, megabytes: int = 256, repeats: int = 8) -> float:
    """The memory's bytes/s as STREAM's copy kernel counts them (bytes read plus bytes written),
    with torch's threads, best of `repeats` copies of a buffer far larger than the caches."""
    import torch
    device = torch.device(device or "cpu")
    source = torch.ones(megabytes * 2 ** 20 // 4, device=device)
    target = torch.empty_like(source)
    clock = device_clock(device)
    best = 0.0
    for _ in range(repeats):
        start = clock()
        target.copy_(source)
        best = max(best, 2 * source.numel() * 4 / (clock() - start))
    return best


class ForwardLog:
    """Wraps a model's forward to record what every cached pass fed (each row's length before it,
    and its new tokens) and how long the passes took, so a decoding run's wall time splits into
    the model's and the engine's own, and its work can be set against the roofline."""

    def __init__(self, gpt, clock):
        self.gpt, self.clock, self.calls, self.seconds = gpt, clock, [], 0.0

    def __enter__(self):
        real = self.gpt.forward

        def logged(idx, *args, kv_cache=None, rows=None, n_new=None, **kwargs):
            if kv_cache is not None:
                starts = kv_cache.lengths[list(rows)].tolist()
                self.calls.append((starts, list(n_new) if n_new is not None else [idx.shape[1]] * len(starts)))
            start = self.clock()
            out = real(idx, *args, kv_cache=kv_cache, rows=rows, n_new=n_new, **kwargs)
            self.seconds += self.clock() - start
            return out
        self.gpt.forward = logged
        return self

    def __exit__(self, *exc):
        del self.gpt.forward  # back to the class's method


def roofline_seconds(gpt, calls, cache_bytes: int, bandwidth: float, peak: float) -> float:
    """The least time the logged passes could take on this machine: per pass, the larger of the
    bytes it must move over the memory bandwidth and its FLOPs over the matmul peak. A pass must
    read every weight (the embedding only at its tokens), each row's keys and values up to its new
    length, and write the new ones; it does 2 FLOPs per weight per token (the output head only at
    each row's last token) and 4 per width per layer per key attended."""
    c = gpt.config
    head = gpt.head.weight.numel()
    body = sum(p.numel() for p in gpt.parameters()) - gpt.embed.weight.numel() - head
    weight_bytes = sum(p.numel() * p.element_size() for p in gpt.parameters()) - \
        gpt.embed.weight.numel() * gpt.embed.weight.element_size()
    per_slot = 2 * c.n_layer * c.n_embd * cache_bytes  # keys and values of one token, all layers
    total = 0.0
    for starts, n_new in calls:
        tokens = sum(n_new)
        keys_read = sum(s + n for s, n in zip(starts, n_new))
        moved = weight_bytes + tokens * c.n_embd * 4 + (keys_read + tokens) * per_slot
        attended = sum(n * s + n * (n + 1) // 2 for s, n in zip(starts, n_new))
        flops = 2 * body * tokens + 2 * head * len(starts) + 4 * c.n_layer * c.n_embd * attended
        total += max(moved / bandwidth, flops / peak)
    return total


def sampled_tokens(results) -> int:
    """Tokens the model sampled, over every thread of every rollout."""
    return sum(sum(mask) for r in results for thread in r["threads"] for _, mask in thread["calls"])


def timed_decoding(gpt, run, clock) -> dict:
    """Run `run()` (an engine's decoding) once under a ForwardLog: its results, wall seconds,
    the model's share and the passes it made."""
    with ForwardLog(gpt, clock) as log:
        start = clock()
        results = run()
        seconds = clock() - start
    return {"results": results, "seconds": seconds, "outside": 1 - log.seconds / seconds, "calls": log.calls,
            "rate": sampled_tokens(results) / seconds}


def best_decoding(gpt, run, clock, repeats: int) -> dict:
    """The fastest of `repeats` timed runs (a shared machine's timings vary)."""
    return max((timed_decoding(gpt, run, clock) for _ in range(repeats)), key=lambda t: t["rate"])


def machine_limits(device) -> tuple[float, float]:
    """(bytes/s, FLOP/s): the device's measured memory bandwidth and matmul peak, printed."""
    bandwidth, peak = stream_bandwidth(device), matmul_peak(device)
    print(f"{device.type} limits, measured now: memory {bandwidth / 1e9:.1f} GB/s (STREAM copy), "
          f"matmul {peak / 1e9:,.0f} GFLOP/s")
    return bandwidth, peak


def report_decoding(name: str, timed: dict, roofline: float) -> None:
    print(f"{name:<22}{timed['rate']:>10,.0f} new tokens/s | {roofline / timed['seconds']:>4.0%} of the roofline | "
          f"{timed['outside']:>4.0%} of wall time outside the model")


def one_row_rate(gpt, prompts, context: int, device, clock) -> float:
    """New tokens/s decoding one thread at a time with the same model and cache (4 prompts)."""
    import torch

    import model as M
    start = clock()
    for prompt in prompts[:4]:
        cache = M.KVCache(gpt.config, 1, context, device=device)
        with torch.no_grad(), M.autocast(device):
            logits = gpt(torch.tensor([prompt], device=device), kv_cache=cache, rows=[0], last_only=True)
            for _ in range(context - len(prompt)):
                logits = gpt(logits.argmax(-1, keepdim=True), kv_cache=cache, rows=[0], last_only=True)
    return min(4, len(prompts)) * (context - len(prompts[0])) / (clock() - start)


def naive_rate(gpt, prompt, steps: int, device, clock) -> float:
    """New tokens/s recomputing the whole sequence for every token, no cache."""
    import torch

    import model as M
    ids = list(prompt)
    start = clock()
    with torch.no_grad(), M.autocast(device):
        for _ in range(steps):
            ids.append(int(gpt(torch.tensor([ids], device=device))[0, -1].argmax()))
    return steps / (clock() - start)


def join_seconds(gpt, vocab: int, block: int, before: int, device, clock) -> tuple[float, float]:
    """(seconds of a join, prefilling only its `block` tokens after `before` cached ones; seconds of
    re-prefilling all of them), each the mean of 5."""
    import torch

    import model as M
    ids = torch.randint(0, vocab, (1, before + block), device=device)
    cache = M.KVCache(gpt.config, 1, before + block, device=device)
    with torch.no_grad(), M.autocast(device):
        gpt(ids[:, :before], kv_cache=cache, rows=[0])
        start = clock()
        for _ in range(5):
            cache.truncate(0, before)
            gpt(ids[:, before:], kv_cache=cache, rows=[0])
        join_s = (clock() - start) / 5
        start = clock()
        for _ in range(5):
            cache.truncate(0, 0)
            gpt(ids, kv_cache=cache, rows=[0])
    return join_s, (clock() - start) / 5


def bench_rollout(batch: int, new_tokens: int, preset: str = "tiny", repeats: int = 3) -> None:
    """Serial decoding (SoS+, no spawns) of random weights: the engine against its reference path
    and the roofline, and against simpler decoders run here: one row at a time with the same KV
    cache, naive full recomputation, transformers' generate() when installed. Every row decodes to
    the limit (the engine is given a tokenizer whose EOS the model cannot write), as the baselines
    do. Then what a join saves against re-prefilling the parent."""
    import copy

    import torch

    import model as M
    from rollout import Engine, Limits
    from tokenizer import Tokenizer
    tok = Tokenizer()
    torch.manual_seed(0)
    device = M.pick_device()
    config = M.preset(preset, vocab_size=tok.vocab_size)
    gpt = M.GPT(config).to(device).eval()
    clock = device_clock(device)
    problems = list(countdown.generate_problems(batch, seed=5))
    prompts = [[tok.bos_id] + tok.encode(search.root_prompt(p["nums"], p["target"], False)) for p in problems]
    context = max(map(len, prompts)) + new_tokens
    print(f"== rollout: {preset} preset (random weights) on {device.type}, {torch.get_num_threads()} threads, "
          f"{batch} rows, up to {context} tokens per thread, best of {repeats}")
    bandwidth, peak = machine_limits(device)
    no_stop = copy.copy(tok)
    no_stop.eos_id = -1
    timed = {}
    for path in ("engine", "reference"):
        engine = Engine(gpt, no_stop, parallel=False, limits=Limits(context=context), max_rows=batch,
                        reference=path == "reference")
        timed[path] = best_decoding(gpt, lambda: engine.run(problems), clock, repeats)
    roofline = roofline_seconds(gpt, timed["engine"]["calls"], engine.cache.k.element_size(), bandwidth, peak)
    report_decoding(f"engine, batch {batch}", timed["engine"], roofline)
    report_decoding("reference path", timed["reference"], roofline)
    same = [r["text"] for r in timed["engine"]["results"]] == [r["text"] for r in timed["reference"]["results"]]
    rate = timed["engine"]["rate"]
    print(f"engine / reference: {rate / timed['reference']['rate']:.2f}x; the same greedy texts: {same}")
    one_row = one_row_rate(gpt, prompts, context, device, clock)
    steps = min(64, new_tokens)
    naive = naive_rate(gpt, prompts[0], steps, device, clock)
    print(f"one row at a time, cached: {one_row:>9,.0f} new tokens/s -> engine {rate / one_row:.1f}x")
    print(f"naive full recompute:      {naive:>9,.0f} new tokens/s (first {steps} tokens) -> engine {rate / naive:.1f}x")
    hf_rate = hf_generate_rate(config, prompts, new_tokens, device, clock)
    if hf_rate is None:
        print("transformers not installed: its generate() comparison skipped")
    else:
        print(f"transformers generate():   {hf_rate:>9,.0f} new tokens/s (a Llama of the same shape, batch {batch}) "
              f"-> engine {rate / hf_rate:.1f}x")
    # a join: the parent's cache keeps its text before the spawn block; only the join block is new
    block = 120
    before = min(600, config.context - block)
    join_s, full_s = join_seconds(gpt, tok.vocab_size, block, before, device, clock)
    print(f"join of a {block}-token block after {before} tokens: {join_s * 1e3:.1f} ms, against "
          f"{full_s * 1e3:.1f} ms re-prefilling all {before + block}: {full_s / join_s:.1f}x")


def bench_sft(presets: list[str], steps: int) -> None:
    """SFT throughput per preset on real demonstrations of the preset's task, with train_sft's
    own sequences and training step (`train_sft.train_step`): tokens/s computed (padding
    included) and the padding share, for each mode; eager, and through torch.compile as
    train_sft.py runs it by default (its compile time reported apart, left out of the rate)."""
    import torch
    import countdown as cd
    import model as M
    import search as S
    import train_sft as T
    from tokenizer import Tokenizer
    tok = Tokenizer()
    device = M.pick_device()
    print(f"== sft: {steps} optimizer steps per preset and mode on {device.type}, real demonstrations")
    print(f"{'preset':<8}{'mode':<6}{'tokens/step':>12}{'eager tok/s':>12}{'compiled':>10}{'ratio':>7}"
          f"{'compiling':>11}{'padding':>9}")
    for name in presets:
        cfg = T.SFT_PRESETS[name]
        config = M.preset(name, vocab_size=tok.vocab_size)
        context = min(config.context, 1024) if device.type == "cpu" else config.context
        config = M.preset(name, vocab_size=tok.vocab_size, context=context)
        micro = min(cfg.micro_tokens, 8192) if device.type == "cpu" else cfg.micro_tokens
        batch = min(cfg.batch_tokens, 4 * micro) if device.type == "cpu" else cfg.batch_tokens  # a CPU step stays short
        problems = list(cd.generate_problems(400, seed=7, game=cfg.task))
        for mode in ("sosp", "apr"):
            records = list(S.demonstrate_all(problems, mode))
            sequences, _ = T.training_sequences(records, mode, tok, context)

            def rate(compiled: bool):
                """(tokens/s, padding share, seconds of the first step) over `steps` steps."""
                torch.manual_seed(0)
                gpt = M.GPT(config).to(device)
                forward = T.maybe_compile(gpt, device, compiled, log=lambda *a: None)
                optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-4)
                stream = T.BatchStream(sequences, batch, seed=0)
                counts = {"computed": 0, "real": 0}

                def step():
                    done = T.train_step(forward, stream, stream.next(), micro, tok.pad_id, device)
                    counts["computed"] += done["computed"]
                    counts["real"] += done["real"]
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                began = time.perf_counter()
                for _ in range(3 if compiled else 1):  # warm up (compiling a few shapes)
                    step()
                warmup = time.perf_counter() - began
                counts.update(computed=0, real=0)
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                elapsed = time.perf_counter() - start
                return counts["computed"] / elapsed, 1 - counts["real"] / counts["computed"], \
                    counts["computed"] / steps, warmup
            eager, padding, per_step, _ = rate(False)
            fast, _, _, warmup = rate(True)
            print(f"{name:<8}{mode:<6}{per_step:>12,.0f}{eager:>12,.0f}{fast:>10,.0f}{fast / eager:>6.2f}x"
                  f"{warmup:>10.0f}s{padding:>8.1%}")


# Greedy APR decoding by another checkout of this project (`--baseline`), run in its own process
# so that its modules do not mix with these; it reads its request on stdin, prints JSON.
BASELINE = """
import json, sys, time
sys.path.insert(0, ".")
import model as M
from rollout import Engine
request = json.load(sys.stdin)
gpt, tok, _ = M.load_checkpoint(request["ckpt"], M.pick_device(None))
engine = Engine(gpt, tok, parallel=True, max_rows=request["rows"])
best = None
for _ in range(request["repeats"]):
    start = time.perf_counter()
    results = engine.run(request["problems"])
    best = min(best or 1e30, time.perf_counter() - start)
sampled = sum(sum(mask) for r in results for t in r["threads"] for _, mask in t["calls"])
print(json.dumps({"rate": sampled / best, "texts": [r["text"] for r in results]}))
"""


def baseline_apr(folder: str, ckpt: str, problems, rows: int, repeats: int) -> dict:
    """{"rate", "texts"} of greedy APR decoding by the checkout in `folder`."""
    import json
    import os
    import subprocess
    request = {"ckpt": os.path.abspath(ckpt), "problems": problems, "rows": rows, "repeats": repeats}
    done = subprocess.run([sys.executable, "-c", BASELINE], cwd=folder, input=json.dumps(request),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"--baseline {folder}: its decoding failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout)


def bench_apr(ckpt: str, n: int, repeats: int, rows: int = 64, baseline: str | None = None) -> None:
    """Greedy APR decoding of a trained checkpoint on its validation problems, parents waiting and
    children spawning: the engine against its reference path, the roofline, and optionally
    another checkout of the project (`baseline`, e.g. a git worktree of an earlier commit)."""
    import os

    import model as M
    from rollout import Engine, checkpoint_mode
    if not os.path.isfile(os.path.join(ckpt, "ckpt.pt") if os.path.isdir(ckpt) else ckpt):
        print(f"== apr: no checkpoint at {ckpt} (train one: python train_sft.py --mode apr), skipped")
        return
    if baseline is not None and not os.path.isfile(os.path.join(baseline, "rollout.py")):
        raise ValueError(f"--baseline {baseline} is not a checkout of this project (no rollout.py)")
    device = M.pick_device(None)
    gpt, tok, state = M.load_checkpoint(ckpt, device)
    if "task" not in state.get("train_config", {}):
        raise ValueError(f"{ckpt}: the checkpoint does not say which task it learned (train_config)")
    if checkpoint_mode(state, ckpt) != "apr":
        print(f"== apr: {ckpt} is not an APR model, skipped")
        return
    import torch
    task = countdown.GameConfig(**state["train_config"]["task"])
    problems = countdown.read_problems(countdown.problems_file(task, "val", n, state["args"].get("data_dir", "data")))
    print(f"== apr: greedy decoding of {n} validation problems by {ckpt} on {device.type}, "
          f"{torch.get_num_threads()} threads, {rows} rows, best of {repeats}")
    bandwidth, peak = machine_limits(device)
    clock = device_clock(device)
    timed = {}
    for path in ("engine", "reference"):
        engine = Engine(gpt, tok, parallel=True, max_rows=rows, reference=path == "reference")
        timed[path] = best_decoding(gpt, lambda: engine.run(problems), clock, repeats)
    roofline = roofline_seconds(gpt, timed["engine"]["calls"], engine.cache.k.element_size(), bandwidth, peak)
    results = timed["engine"]["results"]
    print(f"{len(results)} rollouts, {sum(r['children'] for r in results)} children, "
          f"{sampled_tokens(results):,} tokens sampled, {sum(r['correct'] for r in results)} solved")
    report_decoding("engine", timed["engine"], roofline)
    report_decoding("reference path", timed["reference"], roofline)
    texts = [r["text"] for r in results]
    rate = timed["engine"]["rate"]
    print(f"engine / reference: {rate / timed['reference']['rate']:.2f}x; the same greedy texts: "
          f"{texts == [r['text'] for r in timed['reference']['results']]}")
    if baseline is not None:
        other = baseline_apr(baseline, ckpt, problems, rows, repeats)
        print(f"{'baseline ' + baseline:<22}{other['rate']:>10,.0f} new tokens/s -> engine {rate / other['rate']:.2f}x; "
              f"the same greedy texts: {other['texts'] == texts}")


PARTS = {"apr": bench_apr, "search": bench_search, "model": bench_model, "rollout": bench_rollout, "sft": bench_sft}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Speed of the project's parts, as ratios against baselines.")
    parser.add_argument("--part", choices=sorted(PARTS), action="append",
                        help="which part to run (repeatable); default: all")
    parser.add_argument("--n", type=int, default=3000, help="search: problems per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is reported")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], help="model: presets to time")
    parser.add_argument("--steps", type=int, default=3, help="model: training steps per measurement")
    parser.add_argument("--batch-tokens", type=int, default=8192, help="model: tokens per training step")
    parser.add_argument("--rows", type=int, default=64, help="rollout, apr: rows of the KV cache (rollouts decoded together)")
    parser.add_argument("--new-tokens", type=int, default=256, help="rollout: tokens each rollout decodes")
    parser.add_argument("--ckpt", default="out/tiny/sft_apr", help="apr: a trained APR run folder")
    parser.add_argument("--problems", type=int, default=32, help="apr: validation problems decoded")
    parser.add_argument("--rollout-preset", default="tiny", help="rollout: model preset (random weights)")
    parser.add_argument("--baseline", default=None,
                        help="apr: another checkout of this project to time beside (e.g. a git worktree of an older commit)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be positive")
    try:
        for part in args.part or sorted(PARTS):
            if part == "search":
                bench_search(args.n, args.repeats)
            elif part == "model":
                bench_model(args.presets, args.steps, args.batch_tokens)
            elif part == "rollout":
                bench_rollout(args.rows, args.new_tokens, args.rollout_preset, args.repeats)
            elif part == "sft":
                bench_sft(args.presets, args.steps)
            elif part == "apr":
                bench_apr(args.ckpt, args.problems, args.repeats, args.rows, args.baseline)
    except ValueError as error:
        print(f"bench.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
