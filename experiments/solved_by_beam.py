"""
How often the solver solves a problem, by the beam it drew: the spread of search widths a
drawn-beam preset (`train_sft.py --beam 2 --beam-max 4`) shows the model.

    python experiments/solved_by_beam.py data/c4_n1-10_t10-30/train_20000_apr_beam2-4_child4.jsonl --limit 6000

Reads each demonstration's `beam_size` and `solved` fields; prints one line per beam.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Solve rate of demonstrations by their drawn beam.")
    parser.add_argument("demonstrations", help="a .jsonl written by search.py or train_sft.py")
    parser.add_argument("--limit", type=int, default=None, help="only the first N demonstrations")
    args = parser.parse_args(argv)
    drawn, solved = Counter(), Counter()
    with open(args.demonstrations) as f:
        for k, line in enumerate(f):
            if args.limit is not None and k >= args.limit:
                break
            record = json.loads(line)
            drawn[record["beam_size"]] += 1
            solved[record["beam_size"]] += record["solved"]
    for beam in sorted(drawn):
        print(f"beam {beam}: {solved[beam] / drawn[beam]:.1%} solved of {drawn[beam]:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
