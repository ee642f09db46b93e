"""
Speed measurements of the project, each reported beside a baseline measured in the same run
(or, where the baseline is another codebase, beside its published figure, named as such).

    python bench.py                      # every part
    python bench.py --part search        # problem generation and the four solvers
    python bench.py --part model         # training throughput against the matmul peak
    python bench.py --part sft           # train_sft.py's loop on real demonstrations
    python bench.py --part rollout       # the engine against simpler decoders
    python bench.py --part apr --ckpt out/tiny/sft_apr   # greedy APR decoding: keys in place vs gathered

Parts:
- `search`: problems/s of `countdown.py` and demonstrations/s of each solver in `search.py`
  (search plus JSON serialization, as the CLI does), with 1 and 2 worker processes. The
  authors' code wrote 136 problems/s, 1,200 SoS+ and 360 APR demonstrations/s on one core of
  a 2-core virtual machine (rates reported for their code, not re-run here); the ratio against them is
  printed, together with the measured scaling from 1 to 2 workers and the time the paper's
  500,000-problem set with both kinds of demonstrations would take at the 2-worker rates.
- `sft`: training tokens/s of `train_sft.py`'s own loop (sequences, length-bucketed batches,
  AdamW) on real SoS+ and APR demonstrations of each preset's task, and the padding share.
- `rollout`: new tokens/s of the spawn/join engine at batch 64 against one-row cached decoding,
  naive full recomputation and (when installed) transformers' generate(); the share of time
  outside the model; what a join saves against re-prefilling the parent. On the best device
  there is (bf16 on CUDA, the clock read after the GPU finishes), with random weights of the
  `tiny` model or of `--rollout-preset`.
- `apr`: greedy APR evaluation of a trained checkpoint (`--ckpt`, `--problems` validation
  problems, 64 rows) with the KV cache's keys read in place (`Engine(block_slack=2)`, the
  default) against gathered for every batch that is not exactly a block of rows (`block_slack`
  1), the same problems and model in both; the greedy texts must be the same.
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


def matmul_peak(size: int = 1024, seconds: float = 2.0) -> float:
    """The machine's fp32 matmul FLOP/s: a square matmul repeated for about `seconds`."""
    import torch
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * size ** 3 / (time.perf_counter() - start))
    return best


def bench_model(presets: list[str], steps: int, batch_tokens: int) -> None:
    """Training tokens/s and model FLOP/s of a full step (forward, backward, AdamW) on random
    tokens at full context, beside the measured matmul peak of this machine."""
    import torch
    import model as M
    from tokenizer import Tokenizer
    device = M.pick_device()
    peak = matmul_peak() if device.type == "cpu" else None
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


def timed_engine_run(gpt, tok, problems, prompts, context: int, batch: int, clock) -> tuple[float, float]:
    """(new tokens/s of serial engine decoding, share of its wall time outside the model's
    forward). The engine never sees an EOS, so every row decodes to the limit, as the baselines do."""
    import copy

    from rollout import Engine, Limits
    no_stop = copy.copy(tok)
    no_stop.eos_id = -1
    forward_time, real_forward = [0.0], gpt.forward

    def timed_forward(*a, **k):
        start = clock()
        out = real_forward(*a, **k)
        forward_time[0] += clock() - start
        return out
    gpt.forward = timed_forward
    try:
        start = clock()
        results = Engine(gpt, no_stop, parallel=False, limits=Limits(context=context), max_rows=batch).run(problems)
        seconds = clock() - start
    finally:
        gpt.forward = real_forward
    generated = sum(len(r["threads"][0]["calls"][-1][0]) - len(p) for r, p in zip(results, prompts))
    return generated / seconds, 1 - forward_time[0] / seconds


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


def bench_rollout(batch: int, new_tokens: int, preset: str = "tiny") -> None:
    """Decoding speed of the engine against two baselines run here: one row at a time with the
    same KV cache, and naive full recomputation; the share of engine time spent outside the
    model's forward (orchestration); and what a join saves against re-prefilling the parent."""
    import torch

    import model as M
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
    print(f"== rollout: {preset} preset (random weights) on {device.type}, {batch} rows, "
          f"up to {context} tokens per thread")
    engine, orchestration = timed_engine_run(gpt, tok, problems, prompts, context, batch, clock)
    one_row = one_row_rate(gpt, prompts, context, device, clock)
    steps = min(64, new_tokens)
    naive = naive_rate(gpt, prompts[0], steps, device, clock)
    print(f"engine, batch {batch}:        {engine:>9,.0f} new tokens/s "
          f"({orchestration:.0%} of wall time outside the model's forward)")
    print(f"one row at a time, cached: {one_row:>9,.0f} new tokens/s -> engine {engine / one_row:.1f}x")
    print(f"naive full recompute:      {naive:>9,.0f} new tokens/s (first {steps} tokens) "
          f"-> engine {engine / naive:.1f}x")
    hf_rate = hf_generate_rate(config, prompts, new_tokens, device, clock)
    if hf_rate is None:
        print("transformers not installed: its generate() comparison skipped")
    else:
        print(f"transformers generate():   {hf_rate:>9,.0f} new tokens/s (a Llama of the same shape, batch {batch}) "
              f"-> engine {engine / hf_rate:.1f}x")
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


def bench_apr(ckpt: str, n: int, repeats: int) -> None:
    import os

    import model as M
    from rollout import Engine, checkpoint_mode
    if not os.path.isfile(os.path.join(ckpt, "ckpt.pt") if os.path.isdir(ckpt) else ckpt):
        print(f"== apr: no checkpoint at {ckpt} (train one: python train_sft.py --mode apr), skipped")
        return
    gpt, tok, state = M.load_checkpoint(ckpt, M.pick_device(None))
    if "task" not in state.get("train_config", {}):
        raise ValueError(f"{ckpt}: the checkpoint does not say which task it learned (train_config)")
    if checkpoint_mode(state, ckpt) != "apr":
        print(f"== apr: {ckpt} is not an APR model, skipped")
        return
    task = countdown.GameConfig(**state["train_config"]["task"])
    problems = countdown.read_problems(countdown.problems_file(task, "val", n, state["args"].get("data_dir", "data")))
    print(f"== apr: greedy decoding of {n} validation problems by {ckpt}, 64 rows")
    texts, rates = {}, {}
    for slack in (1.0, 2.0):
        engine = Engine(gpt, tok, parallel=True, max_rows=64, block_slack=slack)
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            results = engine.run(problems)
            best = max(best, sum(r["total_tokens"] for r in results) / (time.perf_counter() - start))
        texts[slack], rates[slack] = [r["text"] for r in results], best
    print(f"keys gathered (block_slack 1): {rates[1.0]:>7,.0f} tokens/s")
    print(f"keys in place (block_slack 2): {rates[2.0]:>7,.0f} tokens/s -> {rates[2.0] / rates[1.0]:.2f}x; "
          f"same greedy texts: {texts[1.0] == texts[2.0]}")


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
    parser.add_argument("--rows", type=int, default=64, help="rollout: rollouts decoded together")
    parser.add_argument("--new-tokens", type=int, default=256, help="rollout: tokens each rollout decodes")
    parser.add_argument("--ckpt", default="out/tiny/sft_apr", help="apr: a trained APR run folder")
    parser.add_argument("--problems", type=int, default=32, help="apr: validation problems decoded")
    parser.add_argument("--rollout-preset", default="tiny", help="rollout: model preset (random weights)")
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
                bench_rollout(args.rows, args.new_tokens, args.rollout_preset)
            elif part == "sft":
                bench_sft(args.presets, args.steps)
            elif part == "apr":
                bench_apr(args.ckpt, args.problems, args.repeats)
    except ValueError as error:
        print(f"bench.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
