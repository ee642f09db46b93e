"""
The whole experiment in one command: data, SFT and RL of both methods, evaluation, comparison.

    python pipeline.py tiny      # 107 min on 2 CPU cores (docs/experiments.md, 2026-12-05); rerun after a kill
    python pipeline.py smoke     # the same stages on a few problems, in minutes (CI runs it)
    python pipeline.py tiny --train-seed 1   # a second draw: other initializations, data order, RL samples

Each stage is the command a user would type (`python train_sft.py --mode apr --preset tiny ...`),
printed when it starts and run as its own process, two at a time where they do not wait on each
other (`--jobs`), each logging to `out/<pipeline>/logs/`:

1. SFT of SoS+ and of APR, side by side, then RL from each (`train_sft.py`, `train_rl.py`);
2. greedy evaluation of the four models on the validation and the test problems (`evaluate.py
   --ckpt`), and the SFT models' compute sweeps at temperature 1.0 (`--sweep`: SoS+ cons@1..8,
   APR child budgets 2..4, which its model learns from the half of its demonstrations told
   theirs), each as soon as its model is trained;
3. the SFT models' latency, one problem at a time (`--latency`), with nothing beside it;
4. the comparison table beside the paper's numbers and the figures (`evaluate.py --compare`),
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
import ctypes
import json
import os
import signal
import subprocess
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
HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_ROWS = 256  # threads decoded together in the batch evaluations: fewer steps than 64, same greedy output
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


def jobs(name: str, root: str, data_dir: str, train_seed: int = 0) -> list[dict]:
    """Every stage of a pipeline as a job, in the order the scheduler prefers them (the longest
    chain first: APR's training, then what waits on it): its name, script and argv, the jobs it
    needs finished, and for evaluations the report it writes. Latency is timed, so it runs alone."""
    spec, out = PIPELINES[name], []
    trained = {stage: (run_dir, script, argv) for stage, run_dir, script, argv in stages(name, root, data_dir, train_seed)}
    for stage in ("SFT apr", "SFT sosp", "RL apr", "RL sosp"):
        run_dir, script, argv = trained[stage]
        needs = [stage.replace("RL", "SFT")] if stage.startswith("RL") else []
        out.append({"stage": stage, "script": script, "argv": argv, "run_dir": run_dir, "needs": needs})
    batch = ["--max-rows", str(EVAL_ROWS)]
    for run in ("rl_apr", "sft_apr", "rl_sosp", "sft_sosp"):
        run_dir, trainer = os.path.join(root, run), " ".join(run.split("_")).replace("rl", "RL").replace("sft", "SFT")
        evals = [(["--split", split, *batch], f"eval_{split}.json") for split in ("val", "test")]
        if run == "sft_sosp" or (run == "sft_apr" and "--conditioning" in trained["SFT apr"][2]):
            sweep = ["--sweep", "--temperature", "1", "--n", str(spec["sweep"]), *batch]
            evals.insert(0, (sweep, "eval_val_t1_sweep.json"))
        for argv, report in evals:
            out.append(evaluation(run_dir, argv, report, trainer))
    for run in ("sft_apr", "sft_sosp"):
        latency = evaluation(os.path.join(root, run), ["--latency", "--n", str(spec["latency"])],
                             "eval_val_latency.json", "SFT " + run[4:])
        out.append({**latency, "alone": True})
    return out


def evaluation(run_dir: str, argv: list[str], report: str, trainer: str) -> dict:
    return {"stage": f"evaluation {os.path.basename(run_dir)} {' '.join(argv)}", "script": "evaluate",
            "argv": ["--ckpt", run_dir, *argv], "run_dir": run_dir, "report": report, "needs": [trainer]}


def finished(job: dict) -> bool:
    """Whether a job's output is there and current; a training run made otherwise is a
    ValueError (it must not stand in for the stage, nor be overwritten)."""
    if job["script"] == "evaluate":
        report = os.path.join(job["run_dir"], job["report"])
        return os.path.exists(report) and os.path.getmtime(report) > os.path.getmtime(M.checkpoint_path(job["run_dir"]))
    why_not = stale_run(job["run_dir"], SCRIPTS[job["script"]], job["argv"])
    if why_not:
        raise ValueError(f"{job['run_dir']} {why_not}; move it away or pass another --out")
    return os.path.exists(os.path.join(job["run_dir"], "run.json"))


def run_jobs(todo: list[dict], log_dir: str, slots: int = 2, out=print, heartbeat: float = 300) -> dict:
    """Run the jobs, each as its own process, `slots` at a time, as their needs allow; returns the
    seconds of those that ran. The engine's decoding is mostly Python between small kernels, so
    two one-thread processes do more than one two-thread process (docs/experiments.md, "two
    stages at a time"); a job that is alone (or must be: latency) gets every core."""
    waiting, running, done, seconds = list(todo), {}, set(), {}
    beat = time.time()
    try:
        while waiting or running:
            skip = [j for j in waiting if set(j["needs"]) <= done and finished(j)]
            while skip:  # skipping a job may make those that need it ready: skip until none is
                for job in skip:
                    out(f"== {job['stage']}: finished before, skipped")
                    waiting.remove(job)
                    done.add(job["stage"])
                skip = [j for j in waiting if set(j["needs"]) <= done and finished(j)]
            for job in [j for j in waiting if set(j["needs"]) <= done]:
                share = room(job, running, waiting, done, slots)
                if share:
                    running[job["stage"]] = start(job, share, slots, log_dir, out)
                    waiting.remove(job)
            if not running:
                if waiting:
                    raise RuntimeError(f"jobs wait on jobs that never run: {[j['stage'] for j in waiting]}")
                break
            time.sleep(0.2)
            for stage, run in list(running.items()):
                if run["process"].poll() is None:
                    continue
                del running[stage]
                if run["process"].returncode:
                    print(log_tail(run["log"]), file=sys.stderr)
                    raise ValueError(f"stage {stage} failed (its log: {run['log']}); fix what it printed and "
                                     f"rerun the same `python pipeline.py` command to continue")
                seconds[stage] = time.time() - run["began"]
                done.add(stage)
                out(f"== {stage}: {seconds[stage] / 60:.1f} min")
            if running and time.time() - beat > heartbeat:
                beat = time.time()
                for stage, run in running.items():
                    out(f"   {stage}, {(beat - run['began']) / 60:.0f} min: {log_tail(run['log'], 1)}")
    finally:
        for run in running.values():  # a failure, Ctrl-C or SIGTERM: no job runs on unwatched
            run["process"].terminate()
            run["process"].wait()
    return seconds


def room(job: dict, running: dict, waiting: list, done: set, slots: int) -> int:
    """How many of the slots a ready job takes now (0: it waits). A timed job, or one with no
    other ready job beside it, takes them all; otherwise one."""
    used = sum(run["share"] for run in running.values())
    if job.get("alone"):
        return slots if not used else 0
    if used >= slots:
        return 0
    company = [j for j in waiting if j is not job and set(j["needs"]) <= done and not j.get("alone")]
    return slots if not used and not company else 1


def start(job: dict, share: int, slots: int, log_dir: str, out) -> dict:
    command = [sys.executable, os.path.join(HERE, f"{job['script']}.py"), *job["argv"]]
    if job["script"] != "evaluate" and os.path.exists(os.path.join(job["run_dir"], "ckpt.pt")):
        command.append("--resume")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if share < slots:  # one slot of several: its share of the cores, so that jobs do not wait on each other
        env["OMP_NUM_THREADS"] = str(max(1, cores() * share // slots))
    os.makedirs(log_dir, exist_ok=True)
    log = os.path.join(log_dir, job["stage"].replace(" ", "_").replace("-", "").replace("/", "_") + ".log")
    cpus = f"{env['OMP_NUM_THREADS']} of {cores()} cores" if share < slots else "all cores"
    out(f"== {job['stage']} ({cpus}, log {log}): python {' '.join(command[1:])}")
    with open(log, "a") as f:
        f.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command[1:])}\n")
        f.flush()
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=die_with_parent if sys.platform == "linux" else None)
    return {"process": process, "share": share, "began": time.time(), "log": log}


def die_with_parent() -> None:
    """In the child, before it runs: a SIGTERM when the pipeline dies, even by SIGKILL, so that no
    orphaned job writes into a run folder a rerun of the pipeline works in."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def log_tail(path: str, lines: int = 5) -> str:
    """The last lines of a job's log, progress bars' carriage returns taken as line ends."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4096))
        text = f.read().decode(errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


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


def reproduce(name: str, out_root: str = "out", data_dir: str = "data", out=print, train_seed: int = 0,
              slots: int = 2) -> int:
    """Every stage of a pipeline, then the comparison of its four runs (see the module docstring),
    in out_root/<name>/, or out_root/<name>_seed<S>/ for another `train_seed`."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; use one of {', '.join(PIPELINES)}")
    if train_seed < 0:
        raise ValueError(f"--train-seed must be 0 or more (got {train_seed})")
    root = os.path.join(out_root, name + (f"_seed{train_seed}" if train_seed else ""))
    began = time.time()
    seconds = run_jobs(jobs(name, root, data_dir, train_seed), os.path.join(root, "logs"), slots, out)
    run_dirs = [os.path.join(root, run) for run in RUNS]
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
    parser.add_argument("--jobs", type=int, default=2,
                        help="stages run at once, each a process with its share of the cores (default 2; 1: one "
                             "after another)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more (got {args.jobs})")
    # a kill stops the running stages too; the caller's handler is put back (tests call main in-process)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return reproduce(args.pipeline, args.out, args.data_dir, train_seed=args.train_seed, slots=args.jobs)
    except ValueError as error:
        print(f"pipeline.py: error: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
