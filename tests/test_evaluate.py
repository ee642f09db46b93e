"""Evaluation (evaluate.py and rollout.tree_metrics): metric definitions on hand-built thread
trees and results, the command line on a tiny random checkpoint, figures, and bad input."""

import builtins
import json
import os
import time

import pytest
import torch

import countdown
import evaluate as E
import model as M
from rollout import tree_metrics
from tokenizer import Tokenizer

TOK = Tokenizer()


def thread(parent, calls, spawns=()):
    """A thread as the engine reports it; `calls` are (context tokens, sampled tokens) counts,
    so each call is the previous call's first `shared` tokens plus new ones."""
    out, previous = [], []
    for shared, injected, sampled in calls:
        tokens = previous[:shared] + [("new", len(out), k) for k in range(injected + sampled)]
        mask = [0] * (shared + injected) + [1] * sampled
        out.append((tokens, mask))
        previous = tokens
    return {"parent": parent, "spawns": list(spawns), "calls": out, "status": "done"}


def test_tree_metrics_of_a_parent_with_two_spawns_and_a_nested_child():
    # root: prompt 5 + 20 written (ending in a spawn block of 4 tokens); after the join it keeps
    # 21 tokens, gets a 6-token join block and writes 10 more, spawns again, then 3 more.
    root = thread(None, [(0, 5, 20), (21, 6, 10), (37, 5, 3)], spawns=[2, 1])
    a = thread(0, [(0, 4, 7)])                         # first spawn: 7 written
    b = thread(0, [(0, 4, 9), (12, 3, 2)], spawns=[1])  # 9 + 2 written, and a child of its own
    b_child = thread(2, [(0, 3, 30)])                   # 30 written
    c = thread(0, [(0, 4, 1)])                          # second spawn: 1 written
    threads = [root, a, b, b_child, c]                  # depth first, each before its children
    m = tree_metrics(threads)
    # every context token once: root 25 + (16 new after its 21 kept) + (8 new after 37 kept)
    assert m["total_tokens"] == (25 + 16 + 8) + 11 + (13 + 5) + 33 + 5
    # root's 33 written + the longer of a (7) and b (11 + 30) + c (1)
    assert m["sequential_tokens"] == 33 + max(7, 11 + 30) + 1
    assert m["longest_thread"] == 45  # root's last call: 37 kept + 5 + 3
    assert (m["spawns"], m["children"]) == (3, 4)


def test_tree_metrics_of_a_serial_trace_are_its_length_and_its_output():
    m = tree_metrics([thread(None, [(0, 12, 88)])])
    assert (m["total_tokens"], m["sequential_tokens"], m["longest_thread"]) == (100, 88, 100)
    assert (m["spawns"], m["children"]) == (0, 0)


def result(correct, answer=None, longest=10, total=10, sequential=5, latency=1.0, status="done", reason="",
           threads=()):
    return {"correct": correct, "answer": answer, "longest_thread": longest, "total_tokens": total,
            "sequential_tokens": sequential, "latency": latency, "spawns": 0, "children": 0,
            "threads": [{"text": text, "status": "done"} for text in threads], "status": status,
            "reason": reason, "text": answer or "No solution found.\n"}


RIGHT = "\nExploring Operation: 9+11=20, Resulting Numbers: [20]\n20,20 equal: Goal Reached"
WRONG = "\nExploring Operation: 9+10=20, Resulting Numbers: [20]\n20,20 equal: Goal Reached"
OTHER = "\nExploring Operation: 11+9=20, Resulting Numbers: [20]\n20,20 equal: Goal Reached"


def test_cumulative_accuracy_counts_a_rollout_only_where_its_longest_thread_fits():
    results = [result(True, longest=100), result(True, longest=300), result(False, longest=50),
               result(True, longest=301)]
    assert E.cumulative_accuracy(results, [50, 100, 300, 400]) == [[50, 0.0], [100, 0.25], [300, 0.5], [400, 0.75]]


def test_cons_at_n_votes_over_answers_drops_missing_ones_and_breaks_ties_by_first_seen():
    # two wrong votes beat one right one
    assert E.cons_at_n([[result(False, WRONG), result(True, RIGHT), result(False, WRONG)]]) == 0.0
    # missing answers do not vote: one right answer against three without one wins
    assert E.cons_at_n([[result(False), result(False), result(True, RIGHT), result(False)]]) == 1.0
    # a tie goes to the answer seen first
    assert E.cons_at_n([[result(True, RIGHT), result(False, WRONG)]]) == 1.0
    assert E.cons_at_n([[result(False, WRONG), result(True, RIGHT)]]) == 0.0
    # answers are compared by their operations, so two texts of one answer are one vote
    twice = result(True, "Moving to Node #0" + RIGHT)
    assert E.cons_at_n([[result(False, WRONG), result(True, RIGHT), twice]]) == 1.0
    # different correct answers are different votes: 1 vs 1 vs 1, the first (wrong) wins
    assert E.cons_at_n([[result(False, WRONG), result(True, RIGHT), result(True, OTHER)]]) == 0.0
    # no answer at all: not correct
    assert E.cons_at_n([[result(False), result(False)]]) == 0.0
    # averaged over problems
    assert E.cons_at_n([[result(True, RIGHT)], [result(False, WRONG)]]) == 0.5


def test_pass_at_n_needs_one_correct_sample():
    groups = [[result(False), result(True, RIGHT)], [result(False), result(False, WRONG)], [result(True, RIGHT)]]
    assert E.pass_at_n(groups) == pytest.approx(2 / 3)


def test_samples_sweep_adds_total_tokens_and_takes_the_slowest_sample():
    results = [result(False, WRONG, total=10, sequential=4, latency=1.0),
               result(True, RIGHT, total=20, sequential=9, latency=3.0),
               result(True, RIGHT, total=30, sequential=2, latency=2.0)]
    one, two, three = E.samples_sweep(results, 3)
    assert (one["accuracy"], one["pass"], one["total_tokens"], one["sequential_tokens"]) == (0.0, 0.0, 10, 4)
    assert (two["accuracy"], two["pass"], two["total_tokens"], two["latency"]) == (0.0, 1.0, 30, 3.0)
    assert (three["accuracy"], three["total_tokens"], three["sequential_tokens"]) == (1.0, 60, 9)


def test_summary_reports_cons_and_pass_with_samples():
    results = [result(True, RIGHT), result(False, WRONG), result(False), result(False)]
    m = E.summarize(results, samples=2, windows=[10])
    assert (m["problems"], m["rollouts"], m["accuracy"]) == (2, 4, 0.25)
    assert (m["cons@2"], m["pass@2"]) == (0.5, 0.5)
    assert m["cumulative"] == [[10, 0.25]]
    low, high = m["accuracy_95ci"]
    assert low < 0.25 < high
    assert m["correct"] == [1, 0, 0, 0]  # per rollout, in order: what paired comparisons read


def test_failures_are_told_apart_and_slips_are_counted_over_every_thread():
    results = [result(True, RIGHT), result(False, WRONG), result(False),
               result(False, status="failed", reason="context limit at join"),
               result(False, status="failed", reason="spawn: no Generated Node #0,7"),
               result(False, threads=["Exploring Operation: 9+11=20, Resulting Numbers: [20]\n",
                                      "Exploring Operation: 23+17=38, Resulting Numbers: [38]\n"])]
    assert [E.failure_kind(r) for r in results] == [None, "wrong answer", "no goal", "out of context",
                                                    "stopped by the runtime", "no goal"]
    m = E.summarize(results)
    assert m["failures"] == {"no goal": 2, "wrong answer": 1, "out of context": 1, "stopped by the runtime": 1}
    assert m["arithmetic_slips"] == 0.5  # one of the two steps written, in two different threads


def test_paired_change_counts_gains_and_losses_and_gives_the_exact_mcnemar_p():
    """Only problems that changed count. 8 gained and 2 lost: under equal odds the chance of a
    split at least this uneven is 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 112 / 1024."""
    before = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    after = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    assert E.paired_change(before, after) == {"gained": 8, "lost": 2, "p": 112 / 1024}
    assert E.paired_change(after, before)["p"] == 112 / 1024  # symmetric
    assert E.paired_change([1, 0], [1, 0]) == {"gained": 0, "lost": 0, "p": 1.0}  # nothing changed
    assert E.paired_change([0, 1], [1, 0])["p"] == 1.0  # one each way: as even as it gets
    with pytest.raises(ValueError, match="same problems"):
        E.paired_change([1], [1, 0])


def test_paired_change_of_sample_counts_is_a_sign_test_on_the_problems_that_moved():
    """Counts of correct samples per problem: a problem is gained when its count rises, by any
    amount, and lost when it falls. Here 3 rose (0->4, 1->2, 2->3), 1 fell (4->1) and 2 kept
    theirs, so p = 2 * (C(4,0) + C(4,1)) / 2^4 = 10 / 16."""
    before, after = [0, 1, 2, 4, 3, 0], [4, 2, 3, 1, 3, 0]
    assert E.paired_change(before, after) == {"gained": 3, "lost": 1, "p": 10 / 16}


def test_mean_change_averages_the_runs_per_problem_and_brackets_it_by_resampling_problems():
    """Two runs from one base, on four problems: per problem the runs' mean minus the base is
    1, 1/2, 0 and -1/2, so the mean change is 25 points. Resampled problems can only average
    between the extremes (-50 and +100), and the interval must hold the estimate."""
    before, afters = [0, 0, 1, 1], [[1, 0, 1, 1], [1, 1, 1, 0]]
    change = E.mean_change(before, afters)
    assert change["points"] == 25.0 and change["runs"] == 2
    assert -50 <= change["low"] < 25 < change["high"] <= 100
    assert E.mean_change([0, 1, 0], [[0, 1, 0]] * 3) == {"points": 0.0, "low": 0.0, "high": 0.0, "runs": 3}
    assert E.mean_change([0] * 5, [[1] * 5]) == {"points": 100.0, "low": 100.0, "high": 100.0, "runs": 1}
    with pytest.raises(ValueError, match="same problems"):
        E.mean_change([1, 0], [[1, 0], [1]])


def write_report(folder, name: str, correct: list[int]) -> None:
    """A report file with the fields every report must hold; `--paired` reads only `correct`, the
    per-rollout results, so the other values are placeholders."""
    metrics = {"problems": len(correct), "accuracy": sum(correct) / len(correct), "accuracy_95ci": [0.0, 1.0],
               "correct": correct, "total_tokens": 0, "sequential_tokens": 0, "longest_thread": 0, "children": 0}
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps({"method": "APR", "metrics": metrics}))


def test_paired_cli_compares_each_run_with_the_base_then_averages(tmp_path, capsys):
    """Report files with per-problem results, as `--ckpt` writes them: each run's change
    against the base, then the mean over runs."""
    results = {"base": [0, 0, 1, 1], "a": [1, 0, 1, 1], "b": [1, 1, 1, 0]}
    for run, correct in results.items():
        write_report(tmp_path / run, "eval_val.json", correct)
    runs = [str(tmp_path / run) for run in results]
    assert E.main(["--paired", *runs]) == 0
    out = capsys.readouterr().out
    assert "50.0% of 4 problems (the base)" in out
    assert "75.0% (+25.0), +1/-0 problems" in out and "75.0% (+25.0), +2/-1 problems" in out
    assert "mean over 2 runs: +25.0 points" in out
    assert E.main(["--paired", runs[0]]) == 2  # a base alone: a one-line error
    assert "at least one run" in capsys.readouterr().err


def test_paired_cli_on_sampled_evaluations_compares_counts_of_correct_samples(tmp_path, capsys):
    """`--paired ... --temperature 0.5 --samples 2` reads each run's eval_val_t0.5_n2.json, whose
    per-rollout results hold each problem's two samples together. Base counts 0,1,2 and run
    counts 1,1,1: per sample 50% both, one problem gained and one lost; the base's greedy file
    is not read, and a run without the sampled file gets a one-line error naming it."""
    rollouts = {"base": [0, 0, 1, 0, 1, 1], "run": [1, 0, 0, 1, 1, 0]}
    for run, correct in rollouts.items():
        write_report(tmp_path / run, "eval_val_t0.5_n2.json", correct)
    runs = [str(tmp_path / run) for run in rollouts]
    assert E.main(["--paired", *runs, "--temperature", "0.5", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "50.0% per sample (of 2) of 3 problems (the base)" in out
    assert "50.0% (+0.0), +1/-1 problems solved in more/fewer samples, sign test p=1" in out
    assert "mean over 1 run: +0.0 points" in out
    assert E.main(["--paired", *runs, "--temperature", "0.5", "--samples", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no eval_val_t0.5_n4.json" in err and len(err.splitlines()) == 1


def test_paired_cli_with_a_budget_reads_the_evaluations_told_that_budget(tmp_path, capsys):
    """`--budget 4` pairs the files `--ckpt ... --budget 4` writes (eval_val_t0.5_n2_b4.json),
    not the unconditioned ones beside them: the two differ here (unconditioned, the run gains
    nothing; told 4, it gains both problems), so the printed change says which was read."""
    files = {"base": {"": [0, 0, 1, 1], "_b4": [0, 0, 0, 1]}, "run": {"": [0, 0, 1, 1], "_b4": [1, 0, 1, 1]}}
    for run, by_budget in files.items():
        for tag, correct in by_budget.items():
            write_report(tmp_path / run, f"eval_val_t0.5_n2{tag}.json", correct)
    runs = [str(tmp_path / run) for run in files]
    assert E.main(["--paired", *runs, "--temperature", "0.5", "--samples", "2", "--budget", "4"]) == 0
    out = capsys.readouterr().out
    assert "25.0% per sample (of 2) of 2 problems (the base)" in out
    assert "75.0% (+50.0), +2/-0 problems solved in more/fewer samples" in out
    assert E.main(["--paired", *runs, "--temperature", "0.5", "--samples", "2", "--budget", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no eval_val_t0.5_n2_b3.json" in err and "--budget 3` first" in err


def test_paired_cli_pools_the_two_splits_problem_by_problem(tmp_path, capsys):
    """`--split val+test` puts each run's test problems after its val problems. Val: the run
    gains 2 of 4 problems and loses none; test: it gains 1 and loses 1. Pooled, 8 problems with
    +3/-1: 4 of 8 solved before, 6 after, p = 2 * (C(4,0) + C(4,1)) / 2^4 = 10 / 16. Neither split
    alone shows +3/-1, so the counts must come from both. Evaluating a pooled split is refused."""
    correct = {"base": {"val": [0, 0, 1, 1], "test": [0, 1, 1, 0]},
               "run": {"val": [1, 1, 1, 1], "test": [1, 0, 1, 0]}}
    for run, splits in correct.items():
        for split, results in splits.items():
            write_report(tmp_path / run, f"eval_{split}.json", results)
    runs = [str(tmp_path / run) for run in correct]
    assert E.main(["--paired", *runs, "--split", "val+test"]) == 0
    out = capsys.readouterr().out
    assert "50.0% of 8 problems (the base)" in out
    assert "75.0% (+25.0), +3/-1 problems, McNemar p=0.62" in out
    (tmp_path / "run" / "eval_test.json").unlink()
    assert E.main(["--paired", *runs, "--split", "val+test"]) == 2  # a split missing: one line naming it
    assert "has no eval_test.json" in capsys.readouterr().err
    assert E.main(["--ckpt", runs[1], "--split", "val+test"]) == 2
    assert "--paired only" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The command line on a tiny random checkpoint

TASK = countdown.GameConfig(count=3, num_min=1, num_max=20, target_min=10, target_max=40)


def tiny_run(tmp_path, mode="apr", conditioning=True, name="run"):
    """A random model saved the way train_sft.py saves one, with its val problems on disk."""
    torch.manual_seed(0)
    config = M.GPTConfig(vocab_size=TOK.vocab_size, n_layer=1, n_embd=32, n_head=2, mlp_hidden=48, context=48)
    run_dir = tmp_path / name
    data_dir = tmp_path / "data"
    countdown.problems_file(TASK, "val", 6, str(data_dir), log=lambda *a: None)
    M.save_checkpoint(str(run_dir / "ckpt.pt"), M.GPT(config), TOK, stage="sft",
                      args={"mode": mode, "conditioning": conditioning, "seed": 0, "data_dir": str(data_dir)},
                      train_config={"task": TASK.__dict__, "n_val": 6})
    return run_dir


def test_cli_writes_every_field_of_its_report(tmp_path, capsys):
    run_dir = tiny_run(tmp_path)
    assert E.main(["--ckpt", str(run_dir), "--budget", "3"]) == 0
    report = json.loads((run_dir / "eval_val_b3.json").read_text())
    for key in ("run", "checkpoint", "method", "mode", "split", "problems_file", "temperature", "samples",
                "budget", "context", "metrics"):
        assert key in report, key
    for key in ("problems", "rollouts", "accuracy", "accuracy_95ci", "total_tokens", "sequential_tokens",
                "longest_thread", "spawns", "children", "latency", "cumulative"):
        assert key in report["metrics"], key
    assert report["metrics"]["problems"] == 6 and report["method"] == "APR"
    assert "accuracy" in capsys.readouterr().out


def test_cli_sosp_samples_and_sweep(tmp_path):
    run_dir = tiny_run(tmp_path, mode="sosp", conditioning=False)
    assert E.main(["--ckpt", str(run_dir), "--samples", "2", "--temperature", "1", "--n", "3"]) == 0
    metrics = json.loads((run_dir / "eval_val_t1_n2.json").read_text())["metrics"]
    assert {"cons@2", "pass@2"} <= set(metrics) and metrics["rollouts"] == 6
    assert E.main(["--ckpt", str(run_dir), "--sweep", "--n", "2"]) == 0
    sweep = json.loads((run_dir / "eval_val_sweep.json").read_text())["sweep"]
    assert [p["samples"] for p in sweep] == list(range(1, E.SOSP_SAMPLES + 1))


def test_latency_decodes_each_problem_alone_and_times_it_until_its_answer(tmp_path, monkeypatch):
    """The definition of Figure 6's latency: one engine call per problem (after one warm-up call
    that is not counted), all of its samples in that call, and the point's latency the mean over
    problems of the slowest sample's seconds from the call's start, which the call's own wall time
    bounds."""
    run_dir = tiny_run(tmp_path, mode="sosp", conditioning=False)
    model, tok, _ = M.load_checkpoint(str(run_dir), "cpu")
    problems = countdown.read_problems(str(next((tmp_path / "data").rglob("val_6.jsonl"))))[:3]
    calls, run = [], E.Engine.run

    def timed_run(engine, batch, samples=1, *args, **kwargs):
        start = time.perf_counter()
        results = run(engine, batch, samples, *args, **kwargs)
        calls.append((batch, samples, results, time.perf_counter() - start))
        return results
    monkeypatch.setattr(E.Engine, "run", timed_run)
    point = E.latency_point(model, tok, problems, parallel=False, temperature=1.0, samples=2)
    counted = calls[1:]  # the first call is the warm-up
    assert [batch for batch, _, _, _ in counted] == [[p] for p in problems]
    assert all(samples == 2 and len(results) == 2 for _, samples, results, _ in counted)
    slowest = [max(r["latency"] for r in results) for _, _, results, _ in counted]
    assert all(0 < s <= wall for s, (_, _, _, wall) in zip(slowest, counted))
    assert point["latency"] == pytest.approx(sum(slowest) / len(problems))
    groups = [results for _, _, results, _ in counted]
    assert point["accuracy"] == E.cons_at_n(groups) and point["problems"] == 3
    assert point["total_tokens"] == pytest.approx(sum(r["total_tokens"] for g in groups for r in g) / 3)


def test_matched_tokens_takes_each_curves_best_within_the_total_both_reach():
    apr = [{"budget": b, "total_tokens": t, "accuracy": a} for b, t, a in ((1, 500, 0.3), (4, 900, 0.5), (8, 2000, 0.6))]
    sosp = [{"samples": n, "total_tokens": t, "accuracy": a} for n, t, a in ((1, 400, 0.2), (2, 800, 0.35), (4, 1600, 0.3))]
    m = E.matched_tokens(apr, sosp)
    assert m["tokens"] == 1600  # SoS+'s largest total, below APR's 2,000
    assert m["apr"]["budget"] == 4 and m["sosp"]["samples"] == 2  # the best within 1,600, not the last point
    assert E.matched_tokens(apr[2:], sosp[:1])["apr"] is None  # APR's only point costs more than SoS+ reaches


def test_cli_latency_writes_figure_6s_points(tmp_path):
    sosp = tiny_run(tmp_path, mode="sosp", conditioning=False, name="sosp")
    assert E.main(["--ckpt", str(sosp), "--latency", "--n", "2"]) == 0
    report = json.loads((sosp / "eval_val_latency.json").read_text())
    labels = [E.latency_label(p) for p in report["latency"]]
    assert labels == ["greedy"] + [f"cons@{n}" for n in E.LATENCY_SAMPLES]
    assert all(p["problems"] == 2 and p["latency"] > 0 for p in report["latency"])
    assert report["device"].startswith("cpu (")
    apr = tiny_run(tmp_path, mode="apr", conditioning=True, name="apr")
    assert E.main(["--ckpt", str(apr), "--latency", "--n", "1"]) == 0
    budgets = [p["budget"] for p in json.loads((apr / "eval_val_latency.json").read_text())["latency"]]
    assert budgets == list(E.LATENCY_BUDGETS)  # trained on budgets alone: run only at its budgets
    mixed = tiny_run(tmp_path, mode="apr", conditioning=0.5, name="mixed")
    assert E.main(["--ckpt", str(mixed), "--latency", "--n", "1"]) == 0
    budgets = [p["budget"] for p in json.loads((mixed / "eval_val_latency.json").read_text())["latency"]]
    assert budgets == [None, *E.LATENCY_BUDGETS]  # half its demonstrations had none: greedy too


def compared_runs(tmp_path):
    runs = [tiny_run(tmp_path, "sosp", False, "sosp"), tiny_run(tmp_path, "apr", True, "apr")]
    for run_dir in runs:
        assert E.main(["--ckpt", str(run_dir), "--n", "2"]) == 0
        assert E.main(["--ckpt", str(run_dir), "--n", "2", "--sweep"]) == 0
        assert E.main(["--ckpt", str(run_dir), "--n", "1", "--latency"]) == 0
    return [str(r) for r in runs]


def test_compare_draws_the_figures_when_matplotlib_is_present(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    runs = compared_runs(tmp_path)
    out = tmp_path / "compare"
    assert E.main(["--compare", *runs, "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| SoS+ |" in table and "| APR |" in table and "57.3%" in table and "75.5%" in table
    assert "total tokens per problem: APR" in table  # the matched-compute line of the two sweeps
    from matplotlib.image import imread
    sizes = {"fig4a_total_tokens.png": (480, 600), "fig4b_context_window.png": (480, 600),
             "fig5_runs.png": (480, 600), "fig6_sequential_latency.png": (480, 1080)}  # inches x 120 dpi
    for name, size in sizes.items():
        pixels = imread(out / name)
        assert pixels.shape[:2] == size, name
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 2, f"{name} is blank"


def test_compare_without_matplotlib_writes_the_table_and_says_how_to_get_plots(tmp_path, capsys, monkeypatch):
    runs = compared_runs(tmp_path)
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "compare"
    capsys.readouterr()
    assert E.main(["--compare", *runs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "table.md").exists() and not list(out.glob("*.png"))
    assert "pip install matplotlib" in printed


@pytest.mark.parametrize("case, message", [
    ("no checkpoint", "no checkpoint at"),
    ("no problems file", "does not exist"),
    ("budget without conditioning", "without --conditioning"),
])
def test_bad_input_gets_one_clear_line_and_writes_nothing(tmp_path, capsys, case, message):
    run_dir = tiny_run(tmp_path, mode="apr", conditioning=False)
    before = sorted(os.listdir(run_dir))
    argv = {"no checkpoint": ["--ckpt", str(tmp_path / "missing")],
            "no problems file": ["--ckpt", str(run_dir), "--problems", str(tmp_path / "nope.jsonl")],
            "budget without conditioning": ["--ckpt", str(run_dir), "--budget", "4"]}[case]
    assert E.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("evaluate.py: error:")
    assert sorted(os.listdir(run_dir)) == before
