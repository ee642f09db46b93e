"""Inputs that make no sense, met where a user meets them (`main(argv)`): exit status 2, one line
on stderr naming the cause, no traceback, and nothing written."""

import json
import math
import os

import pytest

import evaluate
import rollout
import train_rl
import train_sft
from conftest import TINY_SFT_RUN


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-step SFT runs of each mode on the test task, and the data they made."""
    root = tmp_path_factory.mktemp("runs")
    for mode in ("sosp", "apr"):
        assert train_sft.main(TINY_SFT_RUN + ["--mode", mode, "--steps", "1", "--data-dir", str(root / "data"),
                                              "--out", str(root / mode)]) == 0
    return root


def one_line_error(capsys, code: int, message: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and message in err, err
    return err


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "-3"], "--steps must be at least 1"),
    (["--eval-every", "0"], "--eval-every must be at least 1"),
    (["--n-val", "0"], "--n-val must be at least 1"),
    (["--n-train", "0"], "--n-train must be at least 1"),
    (["--n-layer", "0"], "--n-layer must be in 1..256"),
    (["--n-embd", "0"], "--n-embd must be in 1..16384"),
    (["--eval-problems", "-1"], "--eval-problems must be 0"),
    (["--lr", "nan"], "--lr must be a finite positive number"),
    (["--device", "tpu"], "unknown --device 'tpu'"),
])
def test_sft_numbers_that_make_no_sense(runs, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = train_sft.main(TINY_SFT_RUN + ["--mode", "apr", "--data-dir", str(runs / "data"), "--out", str(out)] + args)
    one_line_error(capsys, code, message)
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--prompts", "0"], "--prompts must be at least 1"),
    (["--prompts", "100"], "--prompts 100 is more than the 40 training problems"),
    (["--temperature", "-1"], "--temperature must be a finite positive number"),
    (["--temperature", "nan"], "--temperature must be a finite positive number"),
    (["--temperature", "0"], "--temperature must be a finite positive number"),
    (["--n-val", "0"], "--n-val must be at least 1"),
    (["--beta", "-0.1"], "--beta must be a finite number of 0 or more"),
])
def test_rl_numbers_that_make_no_sense(runs, tmp_path, capsys, args, message):
    out = tmp_path / "rl"
    base = ["--init", str(runs / "apr"), "--steps", "1", "--prompts", "2", "--group", "2", "--n-val", "2", "--quiet"]
    one_line_error(capsys, train_rl.main(base + ["--out", str(out)] + args), message)
    assert not out.exists()


@pytest.mark.parametrize("mode, args, message", [
    ("apr", ["--temperature", "-0.5"], "--temperature must be 0 (greedy) or a finite positive number"),
    ("apr", ["--temperature", "nan"], "--temperature must be 0 (greedy) or a finite positive number"),
    ("apr", ["--max-rows", "1"], "--max-rows 1 is too few"),
    ("sosp", ["--max-rows", "0"], "--max-rows 0 is too few"),
    ("apr", ["--budget", "3"], "without --conditioning"),
    ("apr", ["--n", "0"], "--n must be at least 1"),
    ("apr", ["--device", "cuda:7"], "no cuda device here"),
])
def test_evaluation_numbers_that_make_no_sense(runs, capsys, mode, args, message):
    before = sorted(os.listdir(runs / mode))
    one_line_error(capsys, evaluate.main(["--ckpt", str(runs / mode), "--n", "2"] + args), message)
    assert sorted(os.listdir(runs / mode)) == before


@pytest.mark.parametrize("problem, message", [
    (["--nums", "7", "--target", "7"], "a problem has 2 to 5 numbers"),
    (["--nums", *["3"] * 30, "--target", "24"], "a problem has 2 to 5 numbers"),
    (["--nums", "-3", "5", "--target", "24"], "its numbers must be integers in 0..10000"),
    (["--nums", "12345678901234567890", "5", "--target", "24"], "its numbers must be integers in 0..10000"),
    (["--nums", "3", "5", "--target", "1"], "its target must be an integer in 2..10000"),
    (["--nums", "3", "5", "--target", "99999"], "its target must be an integer in 2..10000"),
    (["--nums", "3", "5", "--target", "15", "--temperature", "nan"], "--temperature must be 0"),
    (["--nums", "3", "5", "--target", "15", "--budget", "4"], "without --conditioning"),
])
def test_impossible_problems_for_the_trace_viewer(runs, tmp_path, capsys, problem, message):
    html = tmp_path / "tree.html"
    code = rollout.main(["--ckpt", str(runs / "apr"), "--html", str(html)] + problem)
    one_line_error(capsys, code, message)
    assert not html.exists()


def test_an_output_that_is_a_folder(runs, tmp_path, capsys):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    one_line_error(capsys, rollout.main(["--ckpt", str(runs / "apr"), "--nums", "3", "5", "--target", "15",
                                         "--html", str(folder)]), "is a folder")
    one_line_error(capsys, evaluate.main(["--ckpt", str(runs / "apr"), "--problems", str(folder)]), "is a folder")
    assert os.listdir(folder) == []


@pytest.mark.parametrize("change, message", [
    (["--lr", "1e-2"], "lr 0.003 (now 0.01)"),
    (["--n-train", "30"], "n_train 40 (now 30)"),
    (["--train-seed", "5"], "--train-seed None (now 5)"),
])
def test_resume_refuses_a_run_made_with_other_settings(runs, tmp_path, capsys, change, message):
    """A killed run resumed with other settings would silently mix two runs: refused, naming the
    settings; the checkpoint is left as it was."""
    out = tmp_path / "run"
    common = TINY_SFT_RUN + ["--mode", "apr", "--data-dir", str(runs / "data"), "--out", str(out)]
    assert train_sft.main(common + ["--steps", "1"]) == 0
    os.remove(out / "run.json")  # as if killed after its last checkpoint
    before = (out / "ckpt.pt").read_bytes()
    one_line_error(capsys, train_sft.main(common + ["--steps", "1", "--resume"] + change), message)
    assert (out / "ckpt.pt").read_bytes() == before and not (out / "run.json").exists()
    # only what decides the checks may change
    assert train_sft.main(common + ["--steps", "1", "--resume", "--eval-every", "5"]) == 0


def test_rl_resume_refuses_other_settings(runs, tmp_path, capsys):
    out = tmp_path / "rl"
    base = ["--init", str(runs / "sosp"), "--prompts", "2", "--group", "2", "--n-val", "2", "--quiet", "--out", str(out)]
    assert train_rl.main(base + ["--steps", "1"]) == 0
    one_line_error(capsys, train_rl.main(base + ["--steps", "2", "--resume", "--lr", "1e-3"]), "lr 3e-05 (now 0.001)")


def test_a_corrupt_report_is_named(runs, tmp_path, capsys):
    run = tmp_path / "run"
    os.makedirs(run)
    (run / "eval_val.json").write_text('{"metrics": ')
    one_line_error(capsys, evaluate.main(["--paired", str(run), str(run)]), str(run / "eval_val.json"))
    (run / "eval_val.json").write_text(json.dumps({"metrics": {"accuracy": math.pi}}))
    one_line_error(capsys, evaluate.main(["--compare", str(run), "--out", str(tmp_path / "cmp")]),
                   str(run / "eval_val.json"))


def test_a_run_folder_that_is_a_file_or_unwritable_is_refused_before_training(runs, tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    common = TINY_SFT_RUN + ["--mode", "apr", "--steps", "1", "--data-dir", str(runs / "data")]
    one_line_error(capsys, train_sft.main(common + ["--out", str(a_file)]), "is a file, not a folder")
    rl = ["--init", str(runs / "apr"), "--steps", "1", "--prompts", "2", "--group", "2", "--n-val", "2", "--quiet"]
    one_line_error(capsys, train_rl.main(rl + ["--out", str(a_file)]), "is a file, not a folder")
    assert evaluate.main(["--ckpt", str(runs / "apr"), "--n", "2"]) == 0
    capsys.readouterr()
    one_line_error(capsys, evaluate.main(["--compare", str(runs / "apr"), "--out", str(a_file)]),
                   "is a file, not a folder")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        one_line_error(capsys, train_sft.main(common + ["--out", str(locked / "run")]), "cannot make the folder")
    assert a_file.read_text() == "not a folder"
