"""
How much text a search writes as problems get more numbers: why `countdown.MAX_NUMBERS` is 5.

    python experiments/search_size_by_count.py --problems 20

For each count of input numbers, random problems (numbers in 1..99, target 10..100) are searched
by all four solvers with the authors' settings; prints the slowest search and the largest
demonstration record (as JSON) of each count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import search  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Search time and record size by the count of input numbers.")
    parser.add_argument("--problems", type=int, default=20, help="problems per count")
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 5, 6, 7], help="counts of input numbers")
    args = parser.parse_args(argv)
    for count in args.counts:
        rng = random.Random(0)
        slowest, largest = 0.0, 0
        for i in range(args.problems):
            problem = {"nums": [rng.randint(1, 99) for _ in range(count)], "target": rng.randint(10, 100)}
            for mode in ("dfs", "bfs", "sosp", "apr"):
                began = time.perf_counter()
                record = search.demonstrate(problem, i, mode, 0, search.DEFAULTS[mode])
                slowest = max(slowest, time.perf_counter() - began)
                largest = max(largest, len(json.dumps(record)))
        print(f"{count} numbers: slowest search {slowest:.2f} s, largest record {largest / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
