"""
Evaluation of a trained model the way the paper measures it: accuracy
with the strict verifier, the cost of each rollout in tokens and time, compute sweeps, and the
paper's figures drawn from our own runs.

    python evaluate.py --ckpt out/sft_apr_tiny                      # greedy, the run's val split
    python evaluate.py --ckpt out/sft_sosp_tiny --samples 8 --temperature 1.0   # cons@8, pass@8
    python evaluate.py --ckpt out/sft_apr_tiny --sweep              # APR: 2..4 conditioned children
    python evaluate.py --ckpt out/sft_apr_tiny --latency            # Figure 6: one problem at a time
    python evaluate.py --compare out/sft_sosp_tiny out/sft_apr_tiny # table + figures of several runs
    python evaluate.py --paired out/sft_apr_tiny out/rl_apr_a out/rl_apr_b  # runs vs their base, paired
    python evaluate.py --paired out/sft_apr_tiny out/rl_apr_a --temperature 0.5 --samples 4  # sampled, paired

Each evaluation prints a table and writes `<run>/eval_<split>[...].json`; `--compare` reads those
files, prints one markdown table with the paper's numbers beside ours, and draws the figures
(PNG, if matplotlib is installed) into `out/compare/`.

The metrics, all per problem and averaged (docs/how-it-works.md has the details):
- accuracy: the rollout's answer replays to the target (`countdown.is_correct`);
- total tokens: every token of every thread's context, a parent's prefix counted once;
- sequential tokens: the longest causal chain (a parent's tokens plus its longest child's);
- longest thread: the longest context any thread needed, i.e. the window it must fit;
- cumulative accuracy at window W: correct *and* the longest thread fits in W;
- cons@n: majority vote over the answers of n samples (rollouts without an answer are dropped;
  a tie goes to the answer that appeared first); pass@n: any of n samples is correct;
- latency: wall-clock seconds from the start of a batch until the rollout's root thread ends.
  Problems decode together in batches, so compare latencies of runs with the same batch size;
  `--latency` measures it as a user sees it, each problem decoded alone (Figure 6).

`evaluate()` is the one implementation; the training scripts import it for their periodic checks
and the command line is a thin wrapper around it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections import Counter

from tqdm import tqdm

import countdown
import model as M
from rollout import Engine, Limits, check_rows, check_temperature, checkpoint_mode

# the paper's accuracy (%) on 1,000 validation problems (4 numbers, 4k context)
PAPER_ACCURACY = {
    "SoS+": {"greedy": 57.3, "temperature 1.0": 48.1},
    "SoS+ after RL": {"greedy": 60.0, "temperature 1.0": 58.1},
    "APR": {"greedy": 75.5, "temperature 1.0": 67.8},
    "APR after RL": {"greedy": 83.4, "temperature 1.0": 76.4},
}
# conditioned child counts of the APR sweep: its demonstrations spend 2 to 4 children, and a
# model told half of its budgets follows those and no others (docs/experiments.md, "an APR model
# told half of its budgets" and "the whole pipeline ... from a fresh clone")
APR_BUDGETS = (2, 3, 4)
SOSP_SAMPLES = 8             # the SoS+ sweep: cons@1..8 from 8 samples per problem
# the latency curve (Figure 6), each problem decoded alone: fewer points than the sweep, since
# one problem at a time costs a whole decoding loop per problem
LATENCY_BUDGETS = (2, 4)
LATENCY_SAMPLES = (2, 4)  # cons@1 would repeat the greedy point's cost; cons@8 is slower than any APR point
LATENCY_PROBLEMS = 100
LATENCY_ROWS = 16  # cache rows for one problem: a parent, its children, or cons@n's samples


# ---------------------------------------------------------------------------------------------
# Metrics from rollout results (pure functions: the tests build results by hand)

def wilson_interval(successes: int, n: int, z: float = 1.96):
    """95% confidence interval of a proportion (Wilson score), sound near 0 and 1."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_change(before: list[int], after: list[int]) -> dict:
    """How a change of model moved the same problems, given per problem how many of its samples
    were correct (1 or 0 for greedy), in the same order: problems gained (solved in more samples)
    and lost (in fewer), and the two-sided exact sign test's p-value, the chance of a split of
    the changed problems at least this uneven if gains and losses were equally likely. With one
    sample this is the exact McNemar test. Paired, it sees a change that two separate
    confidence intervals of the same width would hide."""
    if len(before) != len(after):
        raise ValueError(f"paired results need the same problems ({len(before)} vs {len(after)})")
    gained = sum(1 for b, a in zip(before, after) if a > b)
    lost = sum(1 for b, a in zip(before, after) if a < b)
    n, k = gained + lost, min(gained, lost)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"gained": gained, "lost": lost, "p": p}


def mean_change(before: list[float], afters: list[list[float]], resamples: int = 10_000, seed: int = 0) -> dict:
    """How several runs made from the same model (RL with different seeds, say) moved the same
    problems (each one's accuracy: 1 or 0 greedy, its share of correct samples sampled) on
    average: the mean change in accuracy in points, and a 95% bootstrap interval
    that resamples the problems. One RL run gains and loses dozens of problems by chance, so a
    2-point effect hides in any one McNemar test; the mean of a few runs has less of that noise.
    Only the problems are resampled: the runs are taken as given, so how much a fourth seed
    could differ from these three as a whole is not in the interval."""
    import numpy as np
    if not afters or any(len(a) != len(before) for a in afters):
        raise ValueError(f"paired results need the same problems ({len(before)} vs {[len(a) for a in afters]})")
    per_problem = np.mean(np.array(afters, dtype=float), axis=0) - np.array(before, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(before), size=(resamples, len(before)))
    low, high = np.percentile(per_problem[draws].mean(axis=1), [2.5, 97.5])
    return {"points": 100 * float(per_problem.mean()), "low": 100 * float(low), "high": 100 * float(high),
            "runs": len(afters)}


def majority_vote(results: list[dict]) -> dict | None:
    """The result whose answer most samples agree on (answers compared by their operations);
    samples without an answer do not vote; a tie goes to the answer seen first. None if no
    sample has an answer."""
    keys = [countdown.answer_steps(r["answer"]) for r in results]
    votes = Counter(k for k in keys if k)
    if not votes:
        return None
    best = max(votes.values())
    winner = next(k for k in keys if k and votes[k] == best)  # first seen among the tied
    return results[keys.index(winner)]


def vote_is_correct(group: list[dict]) -> bool:
    """Whether the majority answer of one problem's samples is correct."""
    winner = majority_vote(group)
    return bool(winner and winner["correct"])


def cons_at_n(groups: list[list[dict]]) -> float:
    """Share of problems whose majority answer is correct; `groups` holds each problem's samples."""
    return sum(map(vote_is_correct, groups)) / max(1, len(groups))


def pass_at_n(groups: list[list[dict]]) -> float:
    """Share of problems with at least one correct sample."""
    return sum(any(r["correct"] for r in g) for g in groups) / max(1, len(groups))


def context_windows(context: int, points: int = 8) -> list[int]:
    """Windows for cumulative accuracy: `points` even steps up to the model's context (the
    paper's 1k..4k is every other step of 4096)."""
    return [context * k // points for k in range(1, points + 1)]


def cumulative_accuracy(results: list[dict], windows: list[int]) -> list[list]:
    """[window, accuracy] pairs: a rollout counts only if it is correct and its longest thread
    fits in the window."""
    n = max(1, len(results))
    return [[w, sum(r["correct"] and r["longest_thread"] <= w for r in results) / n] for w in windows]


def group_samples(results: list, samples: int) -> list[list]:
    """Rollouts come problem by problem, `samples` each: one list per problem."""
    return [results[i:i + samples] for i in range(0, len(results), samples)]


FAILURE_KINDS = ("no goal", "wrong answer", "out of context", "stopped by the runtime")


def failure_kind(result: dict) -> str | None:
    """Why a rollout failed, None if it did not: "no goal" (it ended without claiming the goal),
    "wrong answer" (it claimed the goal and the verifier rejected its path: a miscopied path, or a
    goal reached by a miscalculation), "out of context" (the root thread filled its context), or
    "stopped by the runtime" (a spawn block it could not act on, or the rollout's token limit)."""
    if result["correct"]:
        return None
    if result["status"] == "failed":
        return "out of context" if "context" in result["reason"] else "stopped by the runtime"
    return "wrong answer" if countdown.GOAL in result["text"] else "no goal"


def summarize(results: list[dict], samples: int = 1, windows: list[int] | None = None) -> dict:
    """The metrics of a set of rollouts (means per rollout; cons@n and pass@n per problem)."""
    n = len(results)
    correct = sum(r["correct"] for r in results)
    low, high = wilson_interval(correct, n)

    def mean(key):
        return _mean(r[key] for r in results)
    metrics = {"problems": n // max(1, samples), "rollouts": n, "accuracy": correct / max(1, n),
               "accuracy_95ci": [low, high], "total_tokens": mean("total_tokens"),
               "sequential_tokens": mean("sequential_tokens"), "longest_thread": mean("longest_thread"),
               "spawns": mean("spawns"), "children": mean("children"), "latency": mean("latency"),
               "failed_threads": sum(t["status"] == "failed" for r in results for t in r["threads"]),
               "correct": [int(r["correct"]) for r in results]}  # per rollout, for paired comparisons
    steps = [countdown.arithmetic_slips(t["text"]) for r in results for t in r["threads"]]
    metrics["arithmetic_slips"] = sum(wrong for _, wrong in steps) / max(1, sum(n for n, _ in steps))
    kinds = [failure_kind(r) for r in results]
    metrics["failures"] = {kind: kinds.count(kind) for kind in FAILURE_KINDS if kind in kinds}
    if samples > 1:
        groups = group_samples(results, samples)
        metrics[f"cons@{samples}"] = cons_at_n(groups)
        metrics[f"pass@{samples}"] = pass_at_n(groups)
    if windows:
        metrics["cumulative"] = cumulative_accuracy(results, windows)
    return metrics


def samples_sweep(results: list[dict], samples: int) -> list[dict]:
    """SoS+ with more samples: cons@n and pass@n from the first n samples of each problem, for
    n = 1..samples, with their cost (total tokens add up; the samples run side by side, so the
    sequential tokens and latency are those of the slowest)."""
    groups = group_samples(results, samples)
    points = []
    for n in range(1, samples + 1):
        firsts = [g[:n] for g in groups]
        points.append({"samples": n, "accuracy": cons_at_n(firsts), "pass": pass_at_n(firsts),
                       "total_tokens": _mean(sum(r["total_tokens"] for r in g) for g in firsts),
                       "sequential_tokens": _mean(max(r["sequential_tokens"] for r in g) for g in firsts),
                       "latency": _mean(max(r["latency"] for r in g) for g in firsts)})
    return points


def _mean(values) -> float:
    values = list(values)
    return sum(values) / max(1, len(values))


# ---------------------------------------------------------------------------------------------
# Running a model

def evaluate(model, tokenizer, problems: list[dict], parallel: bool, temperature: float = 0.0,
             samples: int = 1, budget: int | None = None, limits: Limits | None = None, max_rows: int = 64,
             seed: int = 0, windows: list[int] | None = None, keep_results: bool = False) -> dict:
    """Roll out every problem `samples` times and summarize (see `summarize`). With
    `keep_results` the rollouts themselves come back too, under "results"."""
    engine = Engine(model, tokenizer, parallel=parallel, limits=limits, max_rows=max_rows)
    results = engine.run(problems, samples=samples, temperature=temperature, seed=seed, budget=budget)
    metrics = summarize(results, samples, windows)
    if keep_results:
        metrics["results"] = results
    return metrics


def sweep(model, tokenizer, problems, parallel: bool, temperature: float, limits: Limits, windows,
          max_rows: int = 64, seed: int = 0, progress=print) -> list[dict]:
    """The compute sweep of Figures 4 and 6: APR at each conditioned child count, SoS+ at
    n = 1..8 samples (temperature 1.0 unless another non-zero one is given)."""
    if not parallel:
        t = temperature or 1.0
        run = evaluate(model, tokenizer, problems, False, t, SOSP_SAMPLES, limits=limits, max_rows=max_rows,
                       seed=seed, keep_results=True)
        points = samples_sweep(run["results"], SOSP_SAMPLES)
        for p in points:
            p["temperature"] = t
            progress(f"  cons@{p['samples']}: {p['accuracy']:.1%}, pass@{p['samples']}: {p['pass']:.1%}, "
                     f"{p['total_tokens']:,.0f} tokens")
        return points
    points = []
    for budget in APR_BUDGETS:
        m = evaluate(model, tokenizer, problems, True, temperature, budget=budget, limits=limits,
                     max_rows=max_rows, seed=seed, windows=windows)
        points.append({"budget": budget, **m})
        progress(f"  budget {budget}: accuracy {m['accuracy']:.1%}, {m['children']:.1f} children, "
                 f"{m['total_tokens']:,.0f} tokens, {m['sequential_tokens']:,.0f} sequential")
    return points


def latency_point(model, tokenizer, problems, parallel: bool, temperature: float = 0.0, samples: int = 1,
                  budget: int | None = None, limits: Limits | None = None, seed: int = 0) -> dict:
    """Accuracy against latency as a user sees it: each problem decoded alone, all of its threads
    (or its `samples` samples, for cons@n) together in one engine, and its latency the wall
    seconds from its start until its answer (the slowest sample's). One problem first as a
    warm-up, not counted. Returns the point with cons@n as its accuracy (the one sample's
    correctness when samples is 1), its tokens and its mean latency per problem."""
    engine = Engine(model, tokenizer, parallel=parallel, limits=limits, max_rows=max(samples, LATENCY_ROWS))
    engine.run(problems[:1], samples, temperature, seed=seed, budget=budget)
    results = []
    for i, problem in enumerate(tqdm(problems, desc="one problem at a time", file=sys.stderr, leave=False)):
        results += engine.run([problem], samples, temperature, seed=seed + i, budget=budget)
    point = samples_sweep(results, samples)[-1]
    point.update(budget=budget, temperature=temperature, problems=len(problems),
                 correct=[int(vote_is_correct(g)) for g in group_samples(results, samples)])
    return point


def latency_curve(model, tokenizer, problems, parallel: bool, conditioned: float, limits: Limits, seed: int = 0,
                  progress=print) -> list[dict]:
    """The points of Figure 6: greedy, then APR at conditioned child budgets or SoS+ cons@n at
    temperature 1.0. `conditioned` is the share of the APR model's demonstrations that had a
    budget: one trained on budgets alone is only run at its budgets."""
    if parallel:
        greedy = [(0.0, 1, None)] if conditioned < 1 else []
        specs = greedy + ([(0.0, 1, b) for b in LATENCY_BUDGETS] if conditioned else [])
    else:
        specs = [(0.0, 1, None)] + [(1.0, n, None) for n in LATENCY_SAMPLES]
    points = []
    for temperature, samples, budget in specs:
        point = latency_point(model, tokenizer, problems, parallel, temperature, samples, budget, limits, seed)
        points.append(point)
        progress(f"  {latency_label(point)}: accuracy {point['accuracy']:.1%}, {point['latency']:.2f} s per problem, "
                 f"{point['sequential_tokens']:,.0f} sequential tokens")
    return points


def latency_label(point: dict) -> str:
    if point["budget"] is not None:
        return f"{point['budget']} children"
    return f"cons@{point['samples']}" if point["temperature"] else "greedy"


# ---------------------------------------------------------------------------------------------
# Checkpoints and runs

def run_facts(state: dict, path: str = "the checkpoint") -> dict:
    """What evaluation needs to know about the run that wrote a checkpoint (`path` names it in errors)."""
    args, train_config = state.get("args", {}), state.get("train_config", {})
    mode = checkpoint_mode(state, path)
    try:
        task = countdown.GameConfig(**train_config["task"])
        facts = {"mode": mode, "conditioning": float(args.get("conditioning") or 0), "task": task,
                 "n_val": train_config["n_val"], "seed": args["seed"], "data_dir": args["data_dir"],
                 "stage": state["stage"]}
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: the checkpoint lacks what evaluation reads about its run ({error})") from None
    facts["method"] = ("APR" if mode == "apr" else "SoS+") + (" after RL" if facts["stage"] == "rl" else "")
    return facts


def report_name(split: str, temperature: float, samples: int, budget, context, is_sweep: bool) -> str:
    """`eval_val.json` for the default (greedy, one sample), tagged otherwise."""
    tags = [split]
    if temperature:
        tags.append(f"t{temperature:g}")
    if samples > 1:
        tags.append(f"n{samples}")
    if budget is not None:
        tags.append(f"b{budget}")
    if context:
        tags.append(f"w{context}")
    if is_sweep:
        tags.append("sweep")
    return "eval_" + "_".join(tags) + ".json"


def print_report(report: dict, out=print) -> None:
    m = report["metrics"]
    low, high = m["accuracy_95ci"]
    out(f"{report['method']} ({report['run']}): {m['problems']} {report['split']} problems, "
        f"{'greedy' if not report['temperature'] else 'temperature %g' % report['temperature']}"
        + (f", {report['samples']} samples" if report["samples"] > 1 else "")
        + (f", budget {report['budget']}" if report["budget"] is not None else ""))
    rows = [("accuracy", f"{m['accuracy']:.1%}  [{low:.1%}, {high:.1%}]")]
    for key in (f"cons@{report['samples']}", f"pass@{report['samples']}"):
        if key in m:
            rows.append((key, f"{m[key]:.1%}"))
    rows += [("total tokens", f"{m['total_tokens']:,.0f}"), ("sequential tokens", f"{m['sequential_tokens']:,.0f}"),
             ("longest thread", f"{m['longest_thread']:,.0f}"), ("spawns", f"{m['spawns']:.2f}"),
             ("children", f"{m['children']:.2f}"), ("latency (s)", f"{m['latency']:.2f}")]
    rows.append(("arithmetic slips", f"{m['arithmetic_slips']:.1%} of the steps written"))
    rows.append(("failures", ", ".join(f"{kind} {count}" for kind, count in m["failures"].items()) or "none"))
    for name, value in rows:
        out(f"  {name:<18} {value}")
    if m.get("cumulative"):
        out("  cumulative accuracy by window: "
            + ", ".join(f"{w}: {a:.1%}" for w, a in m["cumulative"]))


# ---------------------------------------------------------------------------------------------
# Comparing runs: one table, the paper's figures

REPORT_METRICS = ("problems", "accuracy", "accuracy_95ci", "correct", "total_tokens", "sequential_tokens",
                  "longest_thread", "children")  # what comparing runs reads


def read_report(path: str) -> dict:
    """One evaluation report, checked to hold what comparing runs reads; ValueError naming it."""
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable report ({error}); rerun its evaluation") from None
    metrics = report.get("metrics") if isinstance(report, dict) else None
    missing = [k for k in REPORT_METRICS if not isinstance(metrics, dict) or k not in metrics]
    if not isinstance(report, dict) or "method" not in report or missing:
        raise ValueError(f"{path} is not a complete report (missing {', '.join(missing) or 'method'}); "
                         f"rerun its evaluation")
    return report


def load_reports(run: str, split: str = "val") -> dict:
    """The evaluation files of one run folder: greedy, temperature 1.0 and sweep, where present."""
    found = {}
    # a sweep at temperature 1.0 (the paper's) stands before one at the run's own temperature
    for key, name in (("greedy", f"eval_{split}.json"), ("temperature 1.0", f"eval_{split}_t1.json"),
                      ("sweep", f"eval_{split}_sweep.json"), ("sweep", f"eval_{split}_t1_sweep.json")):
        path = os.path.join(run, name)
        if os.path.exists(path):
            found[key] = read_report(path)
    if "greedy" not in found:
        raise ValueError(f"{run} has no {split} evaluation yet; run `python evaluate.py --ckpt {run}` first")
    path = os.path.join(run, f"eval_{split}_latency.json")
    if os.path.exists(path):
        found["latency"] = read_latency_report(path)
    return found


def read_latency_report(path: str) -> dict:
    """A `--latency` report, checked to hold the points Figure 6 reads; ValueError naming it."""
    try:
        with open(path) as f:
            report = json.load(f)
        points = report["latency"]
        if not all(isinstance(p["accuracy"], float) and isinstance(p["latency"], float) for p in points):
            raise TypeError("a point without accuracy and latency")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a complete latency report ({error}); rerun `evaluate.py --latency`") from None
    return report


def compare_table(runs: dict) -> str:
    """Markdown: our runs side by side, the paper's accuracy beside each method."""
    lines = ["| method | run | problems | greedy (95% CI) | temperature 1.0 | total tokens | sequential tokens "
             "| longest thread | children | paper greedy | paper temperature 1.0 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run, reports in runs.items():
        greedy = reports["greedy"]
        m = greedy["metrics"]
        hot = reports.get("temperature 1.0")
        paper = PAPER_ACCURACY.get(greedy["method"], {})
        lines.append(" | ".join([
            f"| {greedy['method']}", run, str(m["problems"]),
            f"{m['accuracy']:.1%} ({m['accuracy_95ci'][0]:.1%}-{m['accuracy_95ci'][1]:.1%})",
            f"{hot['metrics']['accuracy']:.1%}" if hot else "-",
            f"{m['total_tokens']:,.0f}", f"{m['sequential_tokens']:,.0f}", f"{m['longest_thread']:,.0f}",
            f"{m['children']:.1f}", f"{paper['greedy']}%" if paper else "-",
            f"{paper['temperature 1.0']}%" if paper else "-"]) + " |")
    return "\n".join(lines)


def sweep_points(reports: dict) -> tuple[list, str]:
    """A run's sweep points and what they vary: "budget" (APR children) or "samples" (SoS+ cons@n)."""
    points = reports.get("sweep", {}).get("sweep", [])
    return points, "budget" if points and "budget" in points[0] else "samples"


def matched_tokens(apr: list[dict], sosp: list[dict]) -> dict:
    """Claim 2 at matched compute: the best accuracy of the APR curve and of the SoS+ curve among
    their points that cost at most `tokens` total tokens per problem, `tokens` being the most that
    both curves reach (the smaller of their largest totals). A curve with no point that cheap
    has None."""
    tokens = min(max(p["total_tokens"] for p in apr), max(p["total_tokens"] for p in sosp))

    def best(points):
        return max((p for p in points if p["total_tokens"] <= tokens), key=lambda p: p["accuracy"], default=None)
    return {"tokens": tokens, "apr": best(apr), "sosp": best(sosp)}


def matched_lines(runs: dict) -> list[str]:
    """One line per pair of an APR run with a budget sweep and a SoS+ run with a cons@n sweep."""
    curves = {run: sweep_points(reports) for run, reports in runs.items()}
    lines = []
    for apr_run, (apr, apr_kind) in curves.items():
        for sosp_run, (sosp, sosp_kind) in curves.items():
            if apr and sosp and apr_kind == "budget" and sosp_kind == "samples":
                m = matched_tokens(apr, sosp)
                a, b = m["apr"], m["sosp"]
                lines.append(f"at most {m['tokens']:,.0f} total tokens per problem: "
                             f"{runs[apr_run]['greedy']['method']} ({apr_run}) best "
                             + (f"{a['accuracy']:.1%} ({a['budget']} children, {a['total_tokens']:,.0f} tokens)"
                                if a else "none") + f", {runs[sosp_run]['greedy']['method']} ({sosp_run}) best "
                             + (f"{b['accuracy']:.1%} (cons@{b['samples']}, {b['total_tokens']:,.0f} tokens)"
                                if b else "none"))
    return lines


def figure_4a(ax, runs: dict) -> None:
    """Accuracy against total tokens: the APR budget sweep, SoS+ cons@n, each run's greedy point."""
    for run, reports in runs.items():
        points, label = sweep_points(reports)
        m, method = reports["greedy"]["metrics"], reports["greedy"]["method"]
        if points:
            ax.plot([p["total_tokens"] for p in points], [100 * p["accuracy"] for p in points], marker="o",
                    label=f"{method} ({'child budget' if label == 'budget' else 'cons@n'})")
        ax.scatter([m["total_tokens"]], [100 * m["accuracy"]], marker="*", s=120,
                   label=f"{method} greedy ({os.path.basename(run)})")
    ax.set(xlabel="total tokens per problem", ylabel="accuracy (%)", title="Fig. 4a: accuracy vs total tokens")


def figure_4b(ax, runs: dict) -> None:
    """Cumulative accuracy against the context window, and some conditioned child budgets."""
    for run, reports in runs.items():
        method = reports["greedy"]["method"]
        curve = reports["greedy"]["metrics"].get("cumulative", [])
        ax.plot([w for w, _ in curve], [100 * a for _, a in curve], marker="o",
                label=f"{method} ({os.path.basename(run)})")
        points, label = sweep_points(reports)
        for p in points:
            if label == "budget" and p["budget"] in (2, 4, 6) and p.get("cumulative"):
                ax.plot([w for w, _ in p["cumulative"]], [100 * a for _, a in p["cumulative"]], linestyle="--",
                        label=f"{method}, {p['budget']} children")
    ax.set(xlabel="context window (tokens)", ylabel="cumulative accuracy (%)",
           title="Fig. 4b: accuracy within a window")


def figure_5(ax, runs: dict) -> None:
    """Greedy and temperature 1.0 accuracy per run, before and after RL side by side."""
    names = list(runs)
    for key, offset in (("greedy", -0.2), ("temperature 1.0", 0.2)):
        values = [100 * runs[r][key]["metrics"]["accuracy"] if key in runs[r] else 0 for r in names]
        ax.bar([i + offset for i in range(len(names))], values, width=0.4, label=key)
    ax.set_xticks(range(len(names)), [f"{runs[r]['greedy']['method']}\n{os.path.basename(r)}" for r in names],
                  fontsize=7)
    ax.set(ylabel="accuracy (%)", title="Fig. 5: accuracy per run (SFT / after RL)")


def figure_6(axes, runs: dict) -> None:
    """Accuracy against sequential tokens (the sweep, batched) and against latency (each problem
    decoded alone, `--latency`)."""
    for reports in runs.values():
        points, _ = sweep_points(reports)
        m, method = reports["greedy"]["metrics"], reports["greedy"]["method"]
        if points:
            axes[0].plot([p["sequential_tokens"] for p in points], [100 * p["accuracy"] for p in points], marker="o",
                         label=method)
        axes[0].scatter([m["sequential_tokens"]], [100 * m["accuracy"]], marker="*", s=120, label=f"{method} greedy")
        curve = reports.get("latency", {}).get("latency", [])
        if curve:
            axes[1].plot([p["latency"] for p in curve], [100 * p["accuracy"] for p in curve], marker="o", label=method)
            for p in curve:
                axes[1].annotate(latency_label(p), (p["latency"], 100 * p["accuracy"]), fontsize=6)
    axes[0].set(xlabel="sequential tokens per problem", ylabel="accuracy (%)", title="Fig. 6a")
    axes[1].set(xlabel="latency per problem (s, one problem at a time)", ylabel="accuracy (%)", title="Fig. 6b")


def plot_figures(runs: dict, out_dir: str) -> list[str]:
    """Figures 4a, 4b, 5 and 6 of the paper from our runs; [] when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, draw, columns in (("fig4a_total_tokens.png", figure_4a, 1), ("fig4b_context_window.png", figure_4b, 1),
                                ("fig5_runs.png", figure_5, 1), ("fig6_sequential_latency.png", figure_6, 2)):
        fig, axes = plt.subplots(1, columns, figsize=(5 if columns == 1 else 9, 4))
        draw(axes, runs)
        for ax in ([axes] if columns == 1 else axes):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path + ".tmp.png", dpi=120)  # written whole, then renamed
        os.replace(path + ".tmp.png", path)
        plt.close(fig)
        written.append(path)
    return written


def compare(run_dirs: list[str], out_dir: str, split: str = "val", out=print) -> int:
    runs = {run: load_reports(run, split) for run in run_dirs}
    table = compare_table(runs)
    matched = matched_lines(runs)
    if matched:
        table += "\n\n" + "\n".join(f"- {line}" for line in matched)
    countdown.ensure_folder(out_dir)
    out(table)
    countdown.write_atomically(os.path.join(out_dir, "table.md"), [table + "\n"])
    figures = plot_figures(runs, out_dir)
    if figures:
        out("figures: " + ", ".join(figures))
    else:
        out("no figures: matplotlib is not installed (pip install matplotlib); the table is in "
            + os.path.join(out_dir, "table.md"))
    return 0


def paired(run_dirs: list[str], split: str = "val", temperature: float = 0.0, samples: int = 1, budget=None,
           out=print) -> int:
    """`--paired BASE RUN ...`: how each run moved the base run's problems, then the mean over
    the runs (`mean_change`). Greedy by default; with `temperature` and `samples`, the sampled
    evaluations of that setting, compared by each problem's count of correct samples; with
    `budget`, the evaluations told that budget. Split "val+test" pools both splits' problems:
    twice the problems, half the variance of the change."""
    if len(run_dirs) < 2:
        raise ValueError("--paired needs a base run and at least one run made from it")
    counts = {run: [] for run in run_dirs}
    for part in split.split("+"):  # val+test: the two splits' problems one after the other
        name = report_name(part, temperature, samples, budget, None, False)
        for run in run_dirs:
            path = os.path.join(run, name)
            if not os.path.exists(path):
                raise ValueError(f"{run} has no {name} yet; run `python evaluate.py --ckpt {run} --split {part}"
                                 + (f" --temperature {temperature:g} --samples {samples}" if temperature else "")
                                 + (f" --budget {budget}" if budget is not None else "") + "` first")
            correct = read_report(path)["metrics"]["correct"]  # per rollout, a problem's samples together
            counts[run] += [sum(group) for group in group_samples(correct, samples)]
    base, *runs = run_dirs
    accuracy = {run: 100 * sum(c) / (len(c) * samples) for run, c in counts.items()}
    unit = f" per sample (of {samples})" if samples > 1 else ""
    solved = " solved in more/fewer samples" if samples > 1 else ""
    out(f"{base}: {accuracy[base]:.1f}%{unit} of {len(counts[base])} problems (the base)")
    for run in runs:
        change = paired_change(counts[base], counts[run])
        test = "sign test" if samples > 1 else "McNemar"
        out(f"{run}: {accuracy[run]:.1f}% ({accuracy[run] - accuracy[base]:+.1f}), "
            f"+{change['gained']}/-{change['lost']} problems{solved}, {test} p={change['p']:.2g}")
    mean = mean_change([c / samples for c in counts[base]], [[c / samples for c in counts[run]] for run in runs])
    out(f"mean over {mean['runs']} run{'s' if mean['runs'] > 1 else ''}: {mean['points']:+.1f} points "
        f"(95% bootstrap interval over problems {mean['low']:+.1f} to {mean['high']:+.1f})")
    return 0


# ---------------------------------------------------------------------------------------------
# Command line

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Accuracy and cost of a checkpoint on a split of problems (greedy by default), "
                    "compute sweeps, and tables and figures that compare runs.")
    parser.add_argument("--ckpt", help="a run folder (out/<run>) or its ckpt.pt")
    parser.add_argument("--split", default="val", choices=["val", "test", "train", "val+test"],
                        help="which split of the run's task (default val); val+test, with --paired only, "
                             "pools the problems of both")
    parser.add_argument("--problems", help="a problems .jsonl to use instead of the split")
    parser.add_argument("--n", type=int, help="how many problems (default: as many as the run validated on)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--samples", type=int, default=1, help="rollouts per problem: cons@n and pass@n")
    parser.add_argument("--budget", type=int,
                        help="conditioning: SoS+ token budget or APR child count (needs a run trained with --conditioning)")
    parser.add_argument("--context", type=int, help="per-thread context limit W (default: the model's)")
    parser.add_argument("--sweep", action="store_true",
                        help="APR: child budgets 2..4 (needs --conditioning); SoS+: cons@1..8 at temperature 1.0")
    parser.add_argument("--latency", action="store_true",
                        help="latency as a user sees it: each problem decoded alone (Figure 6), greedy and at "
                             f"APR child budgets or SoS+ cons@n; {LATENCY_PROBLEMS} problems unless --n")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="evaluated run folders to put side by side")
    parser.add_argument("--paired", nargs="+", metavar="RUN",
                        help="evaluated run folders, the base first: how each later run moved the base's "
                             "problems, and the mean change over them (greedy; or the evaluations made with "
                             "--temperature and --samples, per problem by its count of correct samples, "
                             "and --budget)")
    parser.add_argument("--out", default=os.path.join("out", "compare"),
                        help="folder for --compare's table and figures (default out/compare)")
    parser.add_argument("--max-rows", type=int, default=64, help="threads decoded together")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best there is)")
    args = parser.parse_args(argv)
    try:
        if args.paired:
            return paired(args.paired, args.split, args.temperature, args.samples, args.budget)
        if "+" in args.split:
            raise ValueError(f"--split {args.split} pools splits for --paired only; evaluate each split on its own")
        if args.compare:
            return compare(args.compare, args.out, args.split)
        if not args.ckpt:
            raise ValueError("give --ckpt out/<run> to evaluate a run, --compare RUN ... to compare runs, "
                             "or --paired BASE RUN ... to count what runs changed")
        return run_evaluation(args)
    except ValueError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2


def run_evaluation(args) -> int:
    check_temperature(args.temperature)
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1 (got {args.samples})")
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be at least 1 (got {args.n})")
    ckpt = M.checkpoint_path(args.ckpt)
    run_dir = os.path.dirname(ckpt)
    model, tokenizer, state = M.load_checkpoint(ckpt, M.pick_device(args.device))
    facts = run_facts(state, ckpt)
    if (args.budget is not None or (args.sweep and facts["mode"] == "apr")) and not facts["conditioning"]:
        raise ValueError(f"{run_dir} was trained without --conditioning, so it cannot follow a budget; "
                         f"drop --budget/--sweep or train with --conditioning")
    if args.context is not None and not 0 < args.context <= model.config.context:
        raise ValueError(f"--context {args.context} must be in 1..{model.config.context}, the model's context")
    n = args.n or (LATENCY_PROBLEMS if args.latency else facts["n_val"])
    if args.problems:
        problems = countdown.read_problems(args.problems)[:n]
        source = args.problems
    else:
        source = countdown.problems_file(facts["task"], args.split, n, facts["data_dir"], facts["seed"])
        problems = countdown.read_problems(source)
    context = args.context or model.config.context
    limits, windows = Limits(context=context), context_windows(context)
    parallel = facts["mode"] == "apr"
    check_rows(args.max_rows, parallel)
    report = {"run": run_dir, "checkpoint": ckpt, "method": facts["method"], "mode": facts["mode"],
              "stage": facts["stage"], "split": args.split, "problems_file": source, "temperature": args.temperature,
              "samples": args.samples, "budget": args.budget, "context": context}
    print(f"evaluating {ckpt} ({facts['method']}) on {len(problems)} problems from {source}", file=sys.stderr)
    if args.latency:
        return run_latency(report, model, tokenizer, problems, parallel, facts["conditioning"], limits, args)
    report["metrics"] = evaluate(model, tokenizer, problems, parallel, args.temperature, args.samples, args.budget,
                                 limits, args.max_rows, args.seed, windows)
    print_report(report)
    if args.sweep:
        print("sweep:" + (" conditioned child counts" if parallel else f" cons@n, {SOSP_SAMPLES} samples"))
        report["sweep"] = sweep(model, tokenizer, problems, parallel, args.temperature, limits, windows,
                                args.max_rows, args.seed)
    name = report_name(args.split, args.temperature, args.samples, args.budget, args.context, args.sweep)
    out = os.path.join(run_dir, name)
    countdown.write_atomically(out, [json.dumps(report, indent=2)])
    print(f"wrote {out}")
    return 0


def device_name(device) -> str:
    """What a latency was measured on, e.g. "cpu (AMD EPYC, 2 threads)": latencies are the machine's."""
    import torch
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    model_name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model_name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                              model_name)
    except OSError:
        pass
    return f"{device.type} ({model_name}, {torch.get_num_threads()} threads)"


def run_latency(report: dict, model, tokenizer, problems, parallel: bool, conditioned: float, limits, args) -> int:
    """`--latency`: the points of Figure 6, written to <run>/eval_<split>_latency.json."""
    device = device_name(next(model.parameters()).device)
    print(f"latency, one problem at a time on {device}:")
    report.update(device=device, latency=latency_curve(model, tokenizer, problems, parallel, conditioned, limits,
                                                       args.seed))
    out = os.path.join(report["run"], f"eval_{args.split}_latency.json")
    countdown.write_atomically(out, [json.dumps(report, indent=2)])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
