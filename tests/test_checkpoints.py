"""Bad checkpoints, met where a user meets them: every script that loads one answers exit status
2 and one line on stderr that names the file and what is wrong, with no traceback and no output
file left behind."""

import os

import pytest
import torch

import bench
import evaluate
import rollout
import train_rl
import train_sft
from conftest import TINY_SFT_RUN


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A one-step APR SFT run of the test task: the checkpoint the bad ones are made from."""
    root = tmp_path_factory.mktemp("good")
    assert train_sft.main(TINY_SFT_RUN + ["--mode", "apr", "--steps", "1", "--data-dir", str(root / "data"),
                                          "--out", str(root / "run")]) == 0
    return root


def edited(state: dict, change) -> dict:
    state = {**state, "config": dict(state["config"]), "tokenizer": dict(state["tokenizer"]),
             "args": dict(state["args"]), "model": dict(state["model"])}
    change(state)
    return state


def transposed_head(state):
    state["model"]["head.weight"] = state["model"]["head.weight"].t().contiguous()


# kind -> (how to make the file from the good one's bytes and dict, what the error line says)
BAD = {
    "empty file": (lambda raw, state: b"", "is not a readable checkpoint"),
    "truncated file": (lambda raw, state: raw[:len(raw) // 2], "is not a readable checkpoint"),
    "random bytes": (lambda raw, state: os.urandom(4096), "is not a readable checkpoint"),
    "a foreign dict": (lambda raw, state: {"weights": torch.zeros(3)}, "is not a checkpoint of this project"),
    "a bare tensor": (lambda raw, state: torch.zeros(3), "is not a checkpoint of this project"),
    "no tokenizer": (lambda raw, state: {k: v for k, v in state.items() if k != "tokenizer"}, "no tokenizer"),
    "an unknown config field": (lambda raw, state: edited(state, lambda s: s["config"].update(n_expert=8)),
                                "unknown config fields ['n_expert']"),
    "20,000 layers": (lambda raw, state: edited(state, lambda s: s["config"].update(n_layer=20_000)),
                      "config n_layer 20000 is not an integer in 1..256"),
    "10^8 number tokens": (lambda raw, state: edited(state, lambda s: s["tokenizer"].update(max_number=10**8)),
                           "max_number must be an integer in 10..100,000"),
    "weights of other shapes": (lambda raw, state: edited(state, transposed_head), "weights do not fit its config"),
    "no mode": (lambda raw, state: edited(state, lambda s: s["args"].pop("mode")), "sosp or an apr model"),
}


def make_bad(good, tmp_path, kind) -> str:
    raw = (good / "run" / "ckpt.pt").read_bytes()
    state = torch.load(good / "run" / "ckpt.pt", weights_only=True)
    content = BAD[kind][0](raw, state)
    run = tmp_path / "bad"
    run.mkdir()
    if isinstance(content, bytes):
        (run / "ckpt.pt").write_bytes(content)
    else:
        torch.save(content, run / "ckpt.pt")
    return str(run)


def scripts(run: str, good, tmp_path) -> dict:
    """Each script's command line that loads the checkpoint in `run`."""
    return {
        "rollout.py": lambda: rollout.main(["--ckpt", run, "--target", "24", "--nums", "3", "5", "7", "1",
                                            "--html", str(tmp_path / "tree.html")]),
        "evaluate.py": lambda: evaluate.main(["--ckpt", run, "--n", "2"]),
        "train_rl.py --init": lambda: train_rl.main(["--init", run, "--steps", "1", "--prompts", "2", "--group", "2",
                                                     "--n-val", "2", "--quiet", "--out", str(tmp_path / "rl")]),
        "train_sft.py --resume": lambda: train_sft.main(TINY_SFT_RUN + ["--mode", "apr", "--steps", "2", "--resume",
                                                                        "--data-dir", str(good / "data"),
                                                                        "--out", run]),
        "bench.py --part apr": lambda: bench.main(["--part", "apr", "--ckpt", run, "--problems", "2",
                                                   "--repeats", "1"]),
    }


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("script", ["rollout.py", "evaluate.py", "train_rl.py --init", "train_sft.py --resume",
                                    "bench.py --part apr"])
def test_a_bad_checkpoint_is_one_line_naming_the_file(good, tmp_path, capsys, kind, script):
    run = make_bad(good, tmp_path, kind)
    before = sorted(os.listdir(run))
    capsys.readouterr()
    assert scripts(run, good, tmp_path)[script]() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert run in err and BAD[kind][1] in err, err
    assert sorted(os.listdir(run)) == before  # nothing written beside it
    assert not any(p.exists() for p in (tmp_path / "tree.html", tmp_path / "rl"))


def test_the_good_checkpoint_passes_every_script(good, tmp_path):
    """The same commands on the unspoiled checkpoint run (so the failures above are the files')."""
    for name, command in scripts(str(good / "run"), good, tmp_path).items():
        if name != "train_sft.py --resume":  # resuming the finished run would train on; covered in test_train_sft
            assert command() == 0, name
