"""
Speed measurements of the project, each reported beside a baseline measured in the same run
(or, where the baseline is another codebase, beside its published figure, named as such).

    python bench.py                      # every part
    python bench.py --part search        # problem generation and the four solvers
    python bench.py --part model         # training throughput against the matmul peak

Parts:
- `search`: problems/s of `countdown.py` and demonstrations/s of each solver in `search.py`
  (search plus JSON serialization, as the CLI does), with 1 and 2 worker processes. The
  authors' code wrote 136 problems/s, 1,200 SoS+ and 360 APR demonstrations/s on one core of
  this kind of machine (figures from the project's issue tracker); the ratio against them is
  printed, together with the measured scaling from 1 to 2 workers and the time the paper's
  500,000-problem set with both kinds of demonstrations would take at the 2-worker rates.
- `model`: training tokens/s and model FLOP/s (6 per parameter per token plus attention) of a
  full training step of the `tiny` and `small` presets, beside this machine's own measured
  fp32 matmul FLOP/s, so the fraction of peak is visible.

Timings on a shared virtual machine vary by tens of percent from run to run, so each figure is
the best of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import time

import countdown
import search

# The authors' per-core rates, as measured for the issue that set our targets (not re-run here:
# their code is not part of this project).
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
        step()  # warm up
        rate = best_rate(lambda: [step() for _ in range(steps)], steps * batch * seq, repeats=2)
        flops = rate * model.flops_per_token(seq)
        share = f"{flops / peak:>8.0%}" if peak else ""
        print(f"{name:<8}{model.num_params() / 1e6:>8.1f}M{seq:>6}{batch:>7}{rate:>10,.0f}{flops / 1e9:>9.1f}{share}")


PARTS = {"search": bench_search, "model": bench_model}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Speed of the project's parts, as ratios against baselines.")
    parser.add_argument("--part", choices=sorted(PARTS), action="append",
                        help="which part to run (repeatable); default: all")
    parser.add_argument("--n", type=int, default=3000, help="search: problems per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is reported")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], help="model: presets to time")
    parser.add_argument("--steps", type=int, default=3, help="model: training steps per measurement")
    parser.add_argument("--batch-tokens", type=int, default=8192, help="model: tokens per training step")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be positive")
    for part in args.part or sorted(PARTS):
        if part == "search":
            bench_search(args.n, args.repeats)
        elif part == "model":
            bench_model(args.presets, args.steps, args.batch_tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
