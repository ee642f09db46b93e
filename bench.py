"""
Speed measurements of the project, each reported beside a baseline measured in the same run
(or, where the baseline is another codebase, beside its published figure, named as such).

    python bench.py                      # every part
    python bench.py --part search        # problem generation and the four solvers

Parts:
- `search`: problems/s of `countdown.py` and demonstrations/s of each solver in `search.py`
  (search plus JSON serialization, as the CLI does), with 1 and 2 worker processes. The
  authors' code wrote 136 problems/s, 1,200 SoS+ and 360 APR demonstrations/s on one core of
  this kind of machine (figures from the project's issue tracker); the ratio against them is
  printed, together with the measured scaling from 1 to 2 workers and the time the paper's
  500,000-problem set with both kinds of demonstrations would take at the 2-worker rates.

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


PARTS = {"search": bench_search}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Speed of the project's parts, as ratios against baselines.")
    parser.add_argument("--part", choices=sorted(PARTS), action="append",
                        help="which part to run (repeatable); default: all")
    parser.add_argument("--n", type=int, default=3000, help="search: problems per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is reported")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be positive")
    for part in args.part or sorted(PARTS):
        if part == "search":
            bench_search(args.n, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
