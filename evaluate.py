"""
Evaluation of a trained model: accuracy with the strict verifier and the cost metrics of the
paper (spec section 5), by running the rollout engine on a split.

    python evaluate.py --ckpt out/sft_apr_tiny/ckpt.pt --split val --n 200

`evaluate()` is the one implementation; training scripts import it for their periodic checks
and the command line is a thin wrapper around it. (The paper's figures, budget sweeps and
run comparisons are the evaluation issue's work and will grow here.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import countdown
import model as M
from rollout import Engine, Limits


def evaluate(model, tokenizer, problems: list[dict], parallel: bool, temperature: float = 0.0,
             samples: int = 1, budget: int | None = None, limits: Limits | None = None, max_rows: int = 64,
             seed: int = 0) -> dict:
    """Roll out every problem and summarize: accuracy (with a 95% Wilson interval), mean total and
    sequential tokens, longest thread, spawns and children per problem, latency."""
    engine = Engine(model, tokenizer, parallel=parallel, limits=limits, max_rows=max_rows)
    results = engine.run(problems, samples=samples, temperature=temperature, seed=seed, budget=budget)
    n = len(results)
    correct = sum(r["correct"] for r in results)
    low, high = wilson_interval(correct, n)

    def mean(key):
        return sum(r[key] for r in results) / max(1, n)
    return {"problems": len(problems), "rollouts": n, "accuracy": correct / max(1, n),
            "accuracy_95ci": [low, high], "total_tokens": mean("total_tokens"),
            "sequential_tokens": mean("sequential_tokens"), "longest_thread": mean("longest_thread"),
            "spawns": mean("spawns"), "children": mean("children"), "latency": mean("latency"),
            "failed_threads": sum(t["status"] == "failed" for r in results for t in r["threads"])}


def wilson_interval(successes: int, n: int, z: float = 1.96):
    """95% confidence interval of a proportion (Wilson score), sound near 0 and 1."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Accuracy and cost of a checkpoint on a split of problems.")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train_sft.py or train_rl.py")
    parser.add_argument("--problems", required=True, help="problems .jsonl (countdown.py)")
    parser.add_argument("--n", type=int, default=200, help="how many problems")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu")
    args = parser.parse_args(argv)
    try:
        model, tokenizer, state = M.load_checkpoint(args.ckpt, M.pick_device(args.device))
        problems = countdown.read_problems(args.problems)[:args.n]
    except ValueError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    parallel = state["args"].get("mode") == "apr"
    metrics = evaluate(model, tokenizer, problems, parallel, args.temperature)
    print(json.dumps(metrics, indent=2))
    out = os.path.join(os.path.dirname(args.ckpt), "eval.json")
    countdown.write_atomically(out, [json.dumps(metrics, indent=2)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
