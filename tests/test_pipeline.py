"""The pipeline (pipeline.py): every stage in order, resumable, refusing runs made otherwise;
and the project's import graph."""

import ast
import glob
import json
import os
import signal

import pytest

import pipeline as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pipeline_runs_every_stage_then_a_rerun_skips_them_all(tmp_path):
    """The pipeline command (smoke scale): four trained runs, each evaluated, one comparison
    table with a row per run; run again, it trains and evaluates nothing."""
    lines = []
    assert P.reproduce("smoke", str(tmp_path / "out"), str(tmp_path / "data"), out=lines.append) == 0
    root = tmp_path / "out" / "smoke"
    for run in ("sft_sosp", "sft_apr", "rl_sosp", "rl_apr"):
        assert (root / run / "run.json").exists() and (root / run / "eval_val.json").exists()
    table = (root / "compare" / "table.md").read_text()
    for method in ("| SoS+ |", "| APR |", "| SoS+ after RL |", "| APR after RL |"):
        assert method in table
    ran = json.loads((root / "pipeline.json").read_text())["stage_seconds"]
    # 4 trainings, 4 greedy evaluations on each split, SoS+'s cons@n sweep and APR's child-budget
    # sweep (APR is told its budget in half of its demonstrations), the SFT models' latency curves
    assert len(ran) == 4 + 8 + 2 + 2
    for run in ("sft_sosp", "sft_apr"):
        assert (root / run / "eval_test.json").exists() and (root / run / "eval_val_latency.json").exists()
    for run in ("sft_sosp", "sft_apr"):
        assert (root / run / "eval_val_t1_sweep.json").exists()
    assert "| SoS+ |" in (root / "compare" / "table_test.md").read_text()
    for split in ("val", "test"):
        assert any(line.startswith(f"{split}: APR - SoS+:") and "McNemar p=" in line for line in lines)
    lines.clear()
    assert P.reproduce("smoke", str(tmp_path / "out"), str(tmp_path / "data"), out=lines.append) == 0
    assert sum("skipped" in line for line in lines) == 16
    assert json.loads((root / "pipeline.json").read_text())["stage_seconds"] == {}
    # a finished run trained otherwise than the stage's command now says (a preset changed since)
    # is refused and left as it was, not taken for the stage's result
    run_json = root / "sft_sosp" / "run.json"
    record = json.loads(run_json.read_text())
    record["train_config"]["steps"] = 2  # smoke's command trains 3
    run_json.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"sft_sosp holds a run trained otherwise: steps 2 \(now 3\)"):
        P.reproduce("smoke", str(tmp_path / "out"), str(tmp_path / "data"), out=lines.append)
    assert json.loads(run_json.read_text()) == record
    record["train_config"]["steps"] = 3
    run_json.write_text(json.dumps(record))
    # an RL run older than the SFT checkpoint it should start from is refused too
    sft_ckpt = root / "sft_apr" / "ckpt.pt"
    later = os.path.getmtime(root / "rl_apr" / "run.json") + 60
    os.utime(sft_ckpt, (later, later))
    with pytest.raises(ValueError, match="rl_apr was trained from an earlier"):
        P.reproduce("smoke", str(tmp_path / "out"), str(tmp_path / "data"), out=lines.append)


def test_another_train_seed_redraws_every_training_stage_on_the_same_data():
    """--train-seed S: each SFT stage gets S as its training seed (initialization, data order) and
    keeps the data seed, so the problems and demonstrations are the same; each RL stage gets S as
    its seed (prompt order, samples); every other argument is the default draw's."""
    default, other = P.stages("tiny", "out/tiny", "data"), P.stages("tiny", "out/tiny_seed1", "data", train_seed=1)
    assert [s[0] for s in default] == [s[0] for s in other]
    for (_, _, script, argv0), (_, _, _, argv1) in zip(default, other):
        args0 = P.SCRIPTS[script].build_parser().parse_args(argv0)
        args1 = P.SCRIPTS[script].build_parser().parse_args(argv1)
        changed = {k for k in vars(args0) if getattr(args0, k) != getattr(args1, k)} - {"out", "init"}
        assert changed == ({"train_seed"} if script == "train_sft" else {"seed"})
        assert args1.seed == 1 if script == "train_rl" else (args1.train_seed == 1 and args1.seed == args0.seed)


def test_every_job_waits_for_the_model_it_reads_and_latency_runs_alone():
    """The jobs' order of needs: RL starts from its SFT run, every evaluation reads a trained
    model and waits for the stage that trains it, and only the timed latency jobs run alone."""
    todo = P.jobs("tiny", "out/tiny", "data")
    by_stage = {job["stage"]: job for job in todo}
    assert len(by_stage) == len(todo) == 16
    for job in todo:
        if job["script"] == "train_rl":
            init = job["argv"][job["argv"].index("--init") + 1]
            assert [by_stage[n]["run_dir"] for n in job["needs"]] == [init]
        elif job["script"] == "evaluate":
            ckpt = job["argv"][job["argv"].index("--ckpt") + 1]
            assert [by_stage[n]["run_dir"] for n in job["needs"]] == [ckpt]
            assert by_stage[job["needs"][0]]["script"] in ("train_sft", "train_rl")
        assert job.get("alone", False) == ("--latency" in job["argv"])
        assert all(todo.index(by_stage[n]) < todo.index(job) for n in job["needs"])  # listed after its needs


def test_a_ready_job_takes_one_slot_beside_others_all_when_alone_and_latency_waits_for_an_idle_machine():
    """How many of 2 slots a ready job gets: one while another job runs or waits beside it, both
    when nothing else could run, none when the slots are full; a latency job only an idle
    machine, all of it."""
    def job(stage, needs=(), alone=False):
        return {"stage": stage, "needs": list(needs), "alone": alone}
    sft_a, sft_b, rl_a = job("SFT a"), job("SFT b"), job("RL a", ["SFT a"])
    latency = job("latency a", ["SFT a"], alone=True)
    one, both = {"share": 1}, {"share": 2}
    assert P.room(sft_a, {}, [sft_a, sft_b], set(), 2) == 1        # its partner is ready too
    assert P.room(sft_a, {}, [sft_a, rl_a], set(), 2) == 2         # RL a cannot run before it
    assert P.room(rl_a, {"SFT b": one}, [rl_a], {"SFT a"}, 2) == 1  # beside the job running
    assert P.room(rl_a, {"x": one, "y": one}, [rl_a], {"SFT a"}, 2) == 0
    assert P.room(rl_a, {"x": both}, [rl_a], {"SFT a"}, 2) == 0
    assert P.room(latency, {"SFT b": one}, [latency], {"SFT a"}, 2) == 0
    assert P.room(latency, {}, [latency, rl_a], {"SFT a"}, 2) == 2
    assert P.room(rl_a, {}, [latency, rl_a], {"SFT a"}, 2) == 2    # a waiting latency job is no partner
    assert P.room(sft_a, {}, [sft_a, sft_b], set(), 1) == 1         # --jobs 1: one after another, all cores


def test_a_damaged_checkpoint_or_run_record_stops_the_pipeline_naming_it(tmp_path, capsys):
    """A stage whose run folder holds a checkpoint cut short (a disk filled up, say) resumes from
    it, and the stage's own one-line error names the file; a run record cut short is named by the
    pipeline; no traceback."""
    out, data = str(tmp_path / "out"), str(tmp_path / "data")
    assert P.reproduce("smoke", out, data, out=lambda *a: None) == 0
    run = tmp_path / "out" / "smoke" / "rl_apr"
    os.remove(run / "run.json")
    raw = (run / "ckpt.pt").read_bytes()
    (run / "ckpt.pt").write_bytes(raw[:len(raw) // 3])
    capsys.readouterr()
    assert P.main(["smoke", "--out", out, "--data-dir", data]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{run / 'ckpt.pt'} is not a readable checkpoint" in err, err
    assert err.strip().splitlines()[-1].startswith("pipeline.py: error: stage RL apr failed")
    # a run record cut short is named, and left as it is
    record = tmp_path / "out" / "smoke" / "sft_sosp" / "run.json"
    record.write_text('{"args": ')
    assert P.main(["smoke", "--out", out, "--data-dir", data]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"holds an unreadable {record}" in err, err
    assert record.read_text() == '{"args": '


def test_an_unknown_pipeline_is_one_clear_line(tmp_path, capsys):
    assert P.main(["huge", "--out", str(tmp_path)]) == 2
    assert "unknown pipeline 'huge'" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_main_gives_back_the_callers_sigterm_handler(tmp_path, capsys):
    """main installs its own SIGTERM handler while it runs; a caller in the same process (a test,
    a notebook) must find its own again afterwards, or its forked workers inherit a stranger's."""
    mine = lambda *_: None
    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert P.main(["huge", "--out", str(tmp_path)]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_top_level_files_import_each_other_without_a_cycle():
    """Libraries below scripts: following the project's own imports (at any depth of a file,
    inside functions too) from any top-level file never leads back to it."""
    files = {os.path.basename(p)[:-3]: p for p in glob.glob(os.path.join(ROOT, "*.py"))}
    imports = {}
    for name, path in files.items():
        tree = ast.parse(open(path).read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
        imports[name] = found & set(files) - {name}
    assert {"pipeline", "evaluate", "train_sft", "train_rl", "model", "rollout"} <= set(imports)

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in imports[start])
    cycles = [name for name in imports if reaches(name, name)]
    assert not cycles, {name: sorted(imports[name]) for name in cycles}
