"""
The whole experiment in one command: data, SFT and RL of both methods, evaluation, comparison.

    python pipeline.py tiny      # 147 min on 2 CPU cores (docs/experiments.md, 2026-12-05); rerun after a kill
    python pipeline.py smoke     # the same stages on a few problems, in under a minute (CI runs it)
    python pipeline.py tiny --train-seed 1   # a second draw: other initializations, data order, RL samples

Each stage is the command a user would type (`python train_sft.py --mode apr --preset tiny ...`),
run in this process and printed before it runs:

1. SFT of SoS+, then RL from it; SFT of APR, then RL from it (`train_sft.py`, `train_rl.py`);
2. greedy evaluation of the four models on the validation and the test problems (`evaluate.py
   --ckpt`), the SFT models' compute sweeps at temperature 1.0 (`--sweep`: SoS+ cons@1..8, APR
   child budgets 1..6, which its model learns from the half of its demonstrations told theirs)
   and their latency, one problem at a time (`--latency`);
3. the comparison table beside the paper's numbers and the figures (`evaluate.py --compare`),
   the test split's table, then the paired leads on both splits: APR over SoS+ after SFT and
   after RL, and RL's effect on each.

A stage whose run folder holds a finished run (`run.json`) made by the stage's command as it
stands is skipped, and one with only a checkpoint resumes, so the same command continues a
killed pipeline; a run made otherwise (another config, or RL older than its SFT model) stops
the pipeline with one line saying so rather than standing in for the stage. Outputs go to
`out/<pipeline>/`: the four run folders, `compare/` (table.md and the figures) and
`pipeline.json` (minutes per stage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import countdown
import evaluate
import model as M
import train_rl
import train_sft

# Each stage's arguments on top of the preset. The training scripts' own greedy checks are cut
# short here because the evaluation stage measures every run on all validation problems anyway.
# `smoke` is the tiny preset cut to a few steps on a few problems, to check that the stages fit.
# `sweep` and `latency` are the problems of the SFT models' compute sweep (Figure 4a) and latency
# curve (Figure 6). APR is told its child count in half of its demonstrations, so that the one
# model is both the greedy APR row and Figure 4a's budget curve; that cost no measurable accuracy
# without a budget (docs/experiments.md, "an APR model told half of its budgets").
APR_SFT = ["--conditioning", "0.5"]
PIPELINES = {
    "tiny": {"preset": "tiny", "sft": ["--eval-problems", "0"], "apr_sft": APR_SFT, "rl": ["--n-val", "50"],
             "sweep": 200, "latency": 100},
    "smoke": {"preset": "tiny", "apr_sft": APR_SFT,
              "sft": ["--eval-problems", "0", "--steps", "3", "--n-train", "200", "--n-val", "12", "--n-layer", "1",
                      "--no-compile", "--quiet"],
              "rl": ["--steps", "1", "--prompts", "4", "--group", "2", "--n-val", "4", "--quiet"],
              "sweep": 2, "latency": 1},
}
SCRIPTS = {"train_sft": train_sft, "train_rl": train_rl}
RUNS = ("sft_sosp", "sft_apr", "rl_sosp", "rl_apr")


def stages(name: str, root: str, data_dir: str, train_seed: int = 0) -> list[tuple]:
    """(stage, run folder, script name, argv) of every training stage, in order. Another
    `train_seed` keeps the problems and demonstrations and draws everything trained anew: SFT's
    initialization and data order, RL's prompts and samples."""
    spec = PIPELINES[name]
    sft_seed, rl_seed = (["--train-seed", str(train_seed)], ["--seed", str(train_seed)]) if train_seed else ([], [])
    out = []
    for mode in ("sosp", "apr"):
        sft_dir, rl_dir = os.path.join(root, f"sft_{mode}"), os.path.join(root, f"rl_{mode}")
        out.append((f"SFT {mode}", sft_dir, "train_sft", ["--mode", mode, "--preset", spec["preset"], "--out", sft_dir,
                                                          "--data-dir", data_dir, *spec["sft"],
                                                          *spec.get(f"{mode}_sft", []), *sft_seed]))
        out.append((f"RL {mode}", rl_dir, "train_rl",
                    ["--init", sft_dir, "--preset", spec["preset"], "--out", rl_dir, *spec["rl"], *rl_seed]))
    return out


def stale_run(run_dir: str, script, argv: list[str]) -> str | None:
    """Why what a stage's run folder holds was not made by the stage's command as it stands
    (None: nothing there, or it was). A finished run must have been trained with the config the
    command resolves to now (a preset changed since would otherwise pass as its result), and an
    RL run, finished or started, must be newer than the SFT checkpoint it starts from."""
    run_file = os.path.join(run_dir, "run.json")
    started = [p for p in (run_file, os.path.join(run_dir, "ckpt.pt")) if os.path.exists(p)]
    if not started:
        return None
    args = script.build_parser().parse_args(argv)
    init = getattr(args, "init", None)  # RL's SFT run
    if init and os.path.exists(init):
        if min(map(os.path.getmtime, started)) < os.path.getmtime(M.checkpoint_path(init)):
            return f"was trained from an earlier {init}"
    if not os.path.exists(run_file):
        return None  # a started run: the stage resumes it
    try:
        with open(run_file) as f:
            run = json.load(f)
    except ValueError as error:
        return f"holds an unreadable {run_file} ({error})"
    wanted = json.loads(json.dumps(script.recorded_config(args), default=str))  # as run.json stores it
    changed = []
    for part, value in wanted.items():
        had = run.get(part)
        if isinstance(value, dict) and isinstance(had, dict):
            changed += [f"{k} {had.get(k)} (now {v})" for k, v in value.items() if had.get(k) != v]
        elif had != value:
            changed.append(f"{part} {had} (now {value})")
    return f"holds a run trained otherwise: {', '.join(changed)}" if changed else None


def train_all(name: str, root: str, data_dir: str, out=print, train_seed: int = 0) -> dict:
    """Run every training stage not finished yet; returns the seconds of those that ran."""
    seconds = {}
    for stage, run_dir, script, argv in stages(name, root, data_dir, train_seed):
        why_not = stale_run(run_dir, SCRIPTS[script], argv)
        if why_not:  # a run made otherwise must not stand in for this stage, nor be overwritten
            raise ValueError(f"{run_dir} {why_not}; move it away or pass another --out")
        if os.path.exists(os.path.join(run_dir, "run.json")):
            out(f"== {stage}: finished before in {run_dir}, skipped")
            continue
        resume = ["--resume"] if os.path.exists(os.path.join(run_dir, "ckpt.pt")) else []
        out(f"== {stage}: python {script}.py {' '.join(argv + resume)}")
        began = time.time()
        if SCRIPTS[script].main(argv + resume):
            raise ValueError(f"stage {stage} failed; fix what it printed and rerun "
                             f"the same `python pipeline.py` command to continue")
        seconds[stage] = time.time() - began
        out(f"== {stage}: {seconds[stage] / 60:.1f} min")
    return seconds


def evaluations(name: str, run_dirs: list[str]) -> list[tuple]:
    """(run folder, evaluate.py argv, the report it writes) of every evaluation, in order: each
    run greedily on the validation and on the test split (which nothing is chosen on), then the
    SFT models' sweeps at temperature 1.0 (SoS+ cons@n; APR child budgets where it was trained
    with conditioning) and their latency curves."""
    spec = PIPELINES[name]
    jobs = []
    for split in ("val", "test"):
        jobs += [(d, ["--split", split], f"eval_{split}.json") for d in run_dirs]
    for d in run_dirs:
        if os.path.basename(d) == "sft_sosp" or (os.path.basename(d) == "sft_apr" and conditioned(d)):
            jobs.append((d, ["--sweep", "--temperature", "1", "--n", str(spec["sweep"])], "eval_val_t1_sweep.json"))
    for d in run_dirs:
        if os.path.basename(d).startswith("sft_"):
            jobs.append((d, ["--latency", "--n", str(spec["latency"])], "eval_val_latency.json"))
    return jobs


def conditioned(run_dir: str) -> bool:
    with open(os.path.join(run_dir, "run.json")) as f:
        return bool(json.load(f)["args"].get("conditioning"))


def evaluate_all(name: str, run_dirs: list[str], out=print) -> dict:
    """Every evaluation whose report is missing or older than its checkpoint."""
    seconds = {}
    for run_dir, argv, report_file in evaluations(name, run_dirs):
        report = os.path.join(run_dir, report_file)
        command = " ".join(["--ckpt", run_dir, *argv])
        if os.path.exists(report) and os.path.getmtime(report) > os.path.getmtime(M.checkpoint_path(run_dir)):
            out(f"== evaluation {command}: done before, skipped")
            continue
        out(f"== evaluation: python evaluate.py {command}")
        began = time.time()
        if evaluate.main(["--ckpt", run_dir, *argv]):
            raise ValueError(f"the evaluation `python evaluate.py {command}` failed")
        took = seconds[f"evaluation {os.path.basename(run_dir)} {' '.join(argv)}"] = time.time() - began
        out(f"== evaluation {command}: {took / 60:.1f} min")
    return seconds


def leads(run_dirs: list[str], split: str = "val") -> str:
    """The paper's claims at this scale, in points of greedy accuracy at the same window: APR over
    SoS+ after SFT and after RL, and RL's effect on each method, paired on the same problems."""
    greedy = {os.path.basename(d): evaluate.load_reports(d, split)["greedy"]["metrics"] for d in run_dirs}
    accuracy = {run: 100 * m["accuracy"] for run, m in greedy.items()}

    def rl_change(mode):
        change = evaluate.paired_change(greedy[f"sft_{mode}"]["correct"], greedy[f"rl_{mode}"]["correct"])
        return (f"{accuracy[f'rl_{mode}'] - accuracy[f'sft_{mode}']:+.1f} "
                f"(+{change['gained']}/-{change['lost']} problems, McNemar p={change['p']:.2g})")
    return (f"{split}: APR - SoS+: {accuracy['sft_apr'] - accuracy['sft_sosp']:+.1f} points after SFT, "
            f"{accuracy['rl_apr'] - accuracy['rl_sosp']:+.1f} after RL; RL on APR: {rl_change('apr')}, "
            f"on SoS+: {rl_change('sosp')}")


def reproduce(name: str, out_root: str = "out", data_dir: str = "data", out=print, train_seed: int = 0) -> int:
    """Every stage of a pipeline, then the comparison of its four runs (see the module docstring),
    in out_root/<name>/, or out_root/<name>_seed<S>/ for another `train_seed`."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; use one of {', '.join(PIPELINES)}")
    if train_seed < 0:
        raise ValueError(f"--train-seed must be 0 or more (got {train_seed})")
    root = os.path.join(out_root, name + (f"_seed{train_seed}" if train_seed else ""))
    began = time.time()
    seconds = train_all(name, root, data_dir, out, train_seed)
    run_dirs = [os.path.join(root, run) for run in RUNS]
    seconds.update(evaluate_all(name, run_dirs, out))
    out(f"== comparison -> {os.path.join(root, 'compare')}")
    evaluate.compare(run_dirs, os.path.join(root, "compare"), out=out)
    out("== the test split, greedy (no choice was made on it)")
    test_table = evaluate.compare_table({d: evaluate.load_reports(d, "test") for d in run_dirs})
    out(test_table)
    countdown.write_atomically(os.path.join(root, "compare", "table_test.md"), [test_table + "\n"])
    for split in ("val", "test"):
        out(leads(run_dirs, split))
    for stage, s in seconds.items():
        out(f"{stage:>24}: {s / 60:5.1f} min")
    out(f"pipeline {name}: {(time.time() - began) / 60:.1f} min in this call ({len(seconds)} stages ran)")
    countdown.write_atomically(os.path.join(root, "pipeline.json"),
                               [json.dumps({"pipeline": name, "stage_seconds": seconds,
                                            "wall_seconds": time.time() - began}, indent=2) + "\n"])
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="The whole pipeline: data, SFT and RL of SoS+ and APR, evaluation, the comparison table and "
                    "figures. Rerun the same command to continue after a kill.")
    parser.add_argument("pipeline", help=f"which one: {', '.join(PIPELINES)}")
    parser.add_argument("--out", default="out", help="root of the pipeline's runs (default out: out/<pipeline>/)")
    parser.add_argument("--data-dir", default="data", help="where problems and demonstrations are cached")
    parser.add_argument("--train-seed", type=int, default=0,
                        help="another draw of the same experiment: the same problems and demonstrations, every model "
                             "trained from another initialization, data order and RL sampling (runs go to "
                             "out/<pipeline>_seed<S>/)")
    args = parser.parse_args(argv)
    try:
        return reproduce(args.pipeline, args.out, args.data_dir, train_seed=args.train_seed)
    except ValueError as error:
        print(f"pipeline.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
