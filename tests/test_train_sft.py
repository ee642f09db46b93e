"""Supervised training (train_sft.py): masks, batching, short runs, resume, DDP, errors."""

import json
import os
from dataclasses import replace

import pytest
import torch

import countdown
import evaluate
import model as M
import search
import train_sft
from conftest import TINY_SFT_RUN, run_torchrun, torchrun_failure
from tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def run(args, data_dir, out):
    return train_sft.main(TINY_SFT_RUN + args + ["--data-dir", data_dir, "--out", str(out)])  # args win


@pytest.mark.parametrize("mode", ["sosp", "apr"])
def test_two_step_run_writes_checkpoint_and_results(tmp_path, data_dir, mode):
    out = tmp_path / mode
    assert run(["--mode", mode, "--steps", "2", "--eval-every", "1", "--eval-problems", "2"], data_dir, out) == 0
    results = json.loads((out / "run.json").read_text())
    assert [h["step"] for h in results["history"]] == [0, 1, 2]
    # greedy decoding with the strict verifier: 2 problems at checks, all 8 at the last step
    assert [h["greedy_problems"] for h in results["history"]] == [2, 2, 8]
    assert results["history"][-1]["val_loss"] < results["history"][0]["val_loss"]
    assert results["padding_share"] < 0.5  # length-sorted micro-batches pad little
    model, tok, state = M.load_checkpoint(str(out / "ckpt.pt"))
    assert state["step"] == 2 and state["args"]["mode"] == mode
    # the last check is a greedy evaluation of the saved model on the run's validation problems
    problems = countdown.read_problems(os.path.join(data_dir, "c4_n1-10_t10-30", "val_8.jsonl"))
    again = evaluate.evaluate(model, tok, problems, parallel=mode == "apr")
    last = results["history"][-1]
    assert (last["greedy_correct"], last["greedy_total_tokens"]) == (again["correct"], again["total_tokens"])


def test_train_seed_changes_the_run_but_not_the_problems(tmp_path, data_dir):
    """--train-seed draws another initialization and data order on the same problems: the
    starting validation loss (same validation sequences) differs, and no new data file appears."""
    losses, files = [], []
    for seed in ("0", "1"):
        assert run(["--mode", "sosp", "--steps", "1", "--train-seed", seed], data_dir, tmp_path / seed) == 0
        losses.append(json.loads((tmp_path / seed / "run.json").read_text())["history"][0]["val_loss"])
        files.append(sorted(os.listdir(data_dir)))
    assert files[0] == files[1]
    assert losses[0] != losses[1]


def test_loss_mask_trains_only_what_the_model_writes():
    """Prompts, conditioning prefixes and join blocks are never targets; EOS ends a thread's last
    call as a target; a call that ends in a spawn block has no EOS."""
    tok = Tokenizer()
    problems = [{"nums": [22, 26, 31, 53], "target": 27}, {"nums": [3, 7, 9, 12], "target": 48}]
    records = [search.demonstrate(p, i, "apr", 0, search.DEFAULTS["apr"]) for i, p in enumerate(problems * 5)]
    record = next(r for r in records if r["spawns"])
    sequences, _ = train_sft.training_sequences([record], "apr", tok, 4096, conditioning=True)
    calls = list(search.lm_calls(record["trace_dict"], "Sub Call Budget: 1 "))
    assert len(sequences) == len(calls)
    for (ids, mask), (segments, ends) in zip(sequences, calls):
        idx, targets = train_sft.collate([(ids, mask)], [0], tok.pad_id, "cpu")
        trained = [t for t in targets[0].tolist() if t != -1]
        written = tok.encode(segments[2][0])
        assert trained == written + ([tok.eos_id] if ends else [])
        injected = tok.encode(segments[0][0] + segments[1][0])
        assert targets[0, :len(injected)].eq(-1).all()
        if segments[1][0].endswith(search.JOIN_CLOSE):
            assert tok.decode(ids[1:len(injected) + 1]).endswith(search.JOIN_CLOSE)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_a_conditioning_share_prefixes_that_share_of_demonstrations_evenly(share):
    """Of any run of consecutive demonstrations, the share given a budget prefix is `share` to
    within one, and each demonstration reads as it would with conditioning on (1) or off (0) alone."""
    flags = [train_sft.has_budget_prefix(k, share) for k in range(400)]
    for start, length in ((0, 400), (37, 100), (200, 9)):
        assert abs(sum(flags[start:start + length]) - share * length) <= 1
    tok = Tokenizer()
    problems = [{"nums": [22, 26, 31, 53], "target": 27}, {"nums": [3, 7, 9, 12], "target": 48}]
    records = [search.demonstrate(p, i, "apr", 0, search.DEFAULTS["apr"]) for i, p in enumerate(problems * 4)]
    mixed, _ = train_sft.training_sequences(records, "apr", tok, 4096, conditioning=share)
    one_by_one = [seq for k, r in enumerate(records)
                  for seq in train_sft.training_sequences([r], "apr", tok, 4096, conditioning=float(flags[k]))[0]]
    assert mixed == one_by_one
    assert any("Sub Call Budget" in tok.decode(ids) for ids, _ in mixed) == (share > 0)


def test_join_repeat_lists_each_call_after_a_join_and_nothing_else():
    tok = Tokenizer()
    problems = [{"nums": [22, 26, 31, 53], "target": 27}, {"nums": [3, 7, 9, 12], "target": 48}]
    records = [search.demonstrate(p, i, "apr", 0, search.DEFAULTS["apr"]) for i, p in enumerate(problems * 5)]
    record = next(r for r in records if r["spawns"])
    once, _ = train_sft.training_sequences([record], "apr", tok, 4096)
    thrice, _ = train_sft.training_sequences([record], "apr", tok, 4096, join_repeat=3)
    calls = list(search.lm_calls(record["trace_dict"]))
    after_join = [k for k, (segments, _) in enumerate(calls) if segments[1][0].endswith(search.JOIN_CLOSE)]
    assert after_join  # a demonstration with a spawn has a parent call after the join
    count = lambda seqs, ids: sum(s[0] == ids for s in seqs)
    for k, (ids, _) in enumerate(once):
        assert count(thrice, ids) == count(once, ids) * (3 if k in after_join else 1)
    assert len(thrice) == len(once) + 2 * len(after_join)


def test_each_mode_gets_its_own_demonstration_beam_and_a_fixed_beam_fixes_the_search():
    cfg = replace(train_sft.TrainConfig(), beam_sosp=3, beam_apr=5)
    assert (train_sft.demo_beam(cfg, "sosp"), train_sft.demo_beam(cfg, "apr")) == (3, 5)
    config = train_sft.search_config("apr", 4)
    assert (config.beam_min, config.beam_max) == (4, 4)
    assert train_sft.search_config("apr", None) == search.DEFAULTS["apr"]
    children = train_sft.search_config("apr", 3, child_beam=4)  # APR's children get a beam of their own
    assert (children.beam_min, children.child_beam_min, children.child_beam_max) == (3, 4, 4)
    assert train_sft.demo_child_beam(replace(cfg, child_beam_apr=4), "sosp") is None


def test_a_beam_range_draws_every_beam_in_it_and_the_spawn_count_follows():
    """--beam 2 --beam-max 4: each problem's beam is drawn from 2..4, all three occur, and an APR
    parent that spawns lists at most its beam of children (the choice a model learns from this)."""
    config = train_sft.search_config("apr", 2, child_beam=3, beam_max=4)
    assert (config.beam_min, config.beam_max, config.child_beam_min) == (2, 4, 3)
    tiny = train_sft.SFT_PRESETS["tiny"]  # the preset draws APR's beams and fixes SoS+'s
    assert (train_sft.demo_beam_max(tiny, "apr"), train_sft.demo_beam_max(tiny, "sosp")) == (4, None)
    problems = countdown.generate_problems(60, game=countdown.GameConfig(count=4, num_max=10, target_min=10, target_max=30))
    records = [search.demonstrate(p, i, "apr", 0, config) for i, p in enumerate(problems)]
    assert {r["beam_size"] for r in records} == {2, 3, 4}
    for r in records:
        for spawn in r["trace_dict"]["sub_calls"]:
            assert 1 <= len(spawn) <= r["beam_size"]


def test_beam_alone_fixes_the_beam_of_a_preset_that_draws_it(tmp_path, data_dir):
    """--beam 3 on the tiny preset (APR beams drawn from 2..4) means a fixed beam of 3, as it
    reads: the run's configuration has no range left, and its demonstrations are the fixed-beam
    file; --beam-max alone keeps the preset's beam at the bottom of the range."""
    for extra, beams, demos in ((["--beam", "3"], (3, None), "_apr_beam3_child4.jsonl"),
                                (["--beam-max", "3"], (2, 3), "_apr_beam2-3_child4.jsonl")):
        out = tmp_path / "-".join(extra)
        assert run(["--mode", "apr", "--preset", "tiny", "--steps", "1", "--n-train", "12", "--n-val", "4"] + extra,
                   data_dir, out) == 0
        cfg = json.loads((out / "run.json").read_text())["train_config"]
        assert (cfg["beam_apr"], cfg["beam_max_apr"]) == beams
        assert any(name.endswith(demos) for name in os.listdir(os.path.join(data_dir, "c4_n1-10_t10-30")))


def test_steps_cover_every_sequence_once_per_epoch_and_micro_batches_respect_the_budget():
    lengths = [5, 80, 13, 200, 7, 64, 64, 33] * 20
    steps = train_sft.epoch_steps(lengths, batch_tokens=1000, seed=3, epoch=0)
    assert sorted(i for s in steps for i in s) == list(range(len(lengths)))
    # every step but the last holds at least the budget, and no more than one sequence beyond it
    assert all(1000 <= sum(lengths[i] for i in s) < 1000 + lengths[s[-1]] for s in steps[:-1])
    assert steps == train_sft.epoch_steps(lengths, 1000, 3, 0)
    assert steps != train_sft.epoch_steps(lengths, 1000, 3, 1)
    for step in steps:
        batches = train_sft.micro_batches(step, lengths, micro_tokens=400)
        assert sorted(i for b in batches for i in b) == sorted(step)
        assert all(max(lengths[i] for i in b) * len(b) <= 400 or len(b) == 1 for b in batches)


def test_a_step_mixes_long_and_short_sequences_as_the_data_does():
    """Steps are random samples: with half the sequences long and half short, no step of ~40
    sequences is all of one kind (micro-batches of similar lengths drawn whole would be)."""
    lengths = [10, 100] * 500
    for step in train_sft.epoch_steps(lengths, batch_tokens=2200, seed=0, epoch=0)[:-1]:
        assert {lengths[i] for i in step} == {10, 100}


def test_resumed_run_ends_with_the_same_weights(tmp_path, data_dir, monkeypatch):
    """Killed after a checkpoint and resumed, a run ends bit for bit where an unbroken one does.
    On the CPU: on an H200 this equality failed (why was not established; CUDA kernels that add
    with atomics, which need not sum in the same order twice, are the usual cause)."""
    args = ["--mode", "sosp", "--steps", "6", "--eval-every", "3", "--device", "cpu"]
    assert run(args, data_dir, tmp_path / "straight") == 0

    real_lr = train_sft.learning_rate

    def killed_at_step_5(step, cfg):
        if step == 4:
            raise KeyboardInterrupt  # killed after the step-3 checkpoint, mid-way to the next
        return real_lr(step, cfg)
    monkeypatch.setattr(train_sft, "learning_rate", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run(args, data_dir, tmp_path / "killed")
    monkeypatch.setattr(train_sft, "learning_rate", real_lr)
    assert M.load_checkpoint(str(tmp_path / "killed" / "ckpt.pt"))[2]["step"] == 3
    assert run(args + ["--resume"], data_dir, tmp_path / "killed") == 0

    straight = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "ckpt.pt", weights_only=True)
    assert resumed["step"] == straight["step"] == 6
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_two_process_gloo_run_agrees_with_one_process(tmp_path, data_dir):
    """torchrun with 2 CPU processes (gloo): each rank takes every other sequence of a step (by length);
    the weights must match a single process accumulating all of them."""
    args = ["--mode", "apr", "--steps", "3", "--eval-every", "3", "--device", "cpu"]  # gloo: CPU tensors
    assert run(args, data_dir, tmp_path / "single") == 0
    returncode, stderr = run_torchrun([os.path.join(ROOT, "train_sft.py")] + args + TINY_SFT_RUN
                                      + ["--data-dir", data_dir, "--out", str(tmp_path / "ddp")], cwd=ROOT)
    assert returncode == 0, torchrun_failure(stderr)
    single = torch.load(tmp_path / "single" / "ckpt.pt", weights_only=True)["model"]
    ddp = torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=True)["model"]
    for name, tensor in single.items():
        assert torch.allclose(tensor, ddp[name], atol=1e-5), name


@pytest.mark.parametrize("args, message", [
    (["--mode", "dfs"], "--mode sosp or --mode apr"),
    (["--mode", "apr", "--preset", "huge"], "unknown --preset"),
    (["--mode", "apr", "--resume"], "no checkpoint"),
    (["--mode", "sosp", "--child-beam", "4"], "SoS+ has none"),
    (["--mode", "apr", "--beam", "3", "--beam-max", "2"], "needs a fixed --beam at or below it"),
    (["--mode", "apr", "--beam", "0", "--beam-max", "4"], "needs a fixed --beam at or below it"),
])
def test_bad_input_gets_one_clear_line(tmp_path, capsys, data_dir, args, message):
    assert train_sft.main(args + ["--out", str(tmp_path / "run"), "--data-dir", data_dir, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_compiled_training_forward_equals_the_eager_one():
    """torch.compile (on by default for real runs) is a fast path: same losses and gradients."""
    if not train_sft.can_compile(torch.device("cpu")):
        pytest.skip("torch.compile needs a C++ compiler on a CPU")
    torch.manual_seed(0)
    model = M.GPT(M.GPTConfig(vocab_size=300, n_layer=1, n_embd=32, n_head=2, mlp_hidden=48, context=64))
    compiled = train_sft.maybe_compile(model, torch.device("cpu"), True)
    for length in (17, 40):  # two shapes: dynamic shapes must not be specialized to the first
        idx = torch.randint(0, 300, (3, length))
        targets = torch.where(torch.rand(3, length) < 0.3, -1, torch.randint(0, 300, (3, length)))
        eager_out = model(idx, targets, reduction="none")
        eager_out.sum().backward()
        eager_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        fast_out = compiled(idx, targets, reduction="none")
        fast_out.sum().backward()
        assert torch.allclose(eager_out, fast_out, atol=1e-5)
        for p, g in zip(model.parameters(), eager_grads):
            assert torch.allclose(p.grad, g, atol=1e-5)
        model.zero_grad()


def test_demonstrations_of_the_wrong_mode_are_refused(tmp_path):
    path = tmp_path / "demos.jsonl"
    path.write_text(json.dumps({"mode": "sosp", "search_path": ""}) + "\n")
    with pytest.raises(ValueError, match="holds sosp demonstrations"):
        train_sft.read_demonstrations(str(path), "apr")
