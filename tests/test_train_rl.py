"""Reinforcement learning (train_rl.py): advantages, the loss against the formula by hand, zero
gradient for uninformative groups, short runs of main, resume, bad input."""

import importlib.util
import json
import math
import os

import pytest
import torch

import countdown
import evaluate
import model as M
import train_rl
import train_sft
from conftest import TINY_SFT_RUN, run_torchrun, torchrun_failure


# ---------------------------------------------------------------------------------------------
# Advantages and the loss


def test_grpo_advantages_are_group_normalized_and_reinforce_only_centred():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    grpo = train_rl.advantages(rewards, group=4, algo="grpo")
    std = math.sqrt((0.75 ** 2 + 3 * 0.25 ** 2) / 3)  # unbiased std of [1, 0, 0, 0]
    expected = [0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std, 0, 0, 0, 0]
    assert torch.allclose(grpo, torch.tensor(expected), atol=1e-6)
    reinforce = train_rl.advantages(rewards, group=4, algo="reinforce")
    assert torch.allclose(reinforce, torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))


def hand_batch():
    """Three sequences from two rollouts (sizes 2 and 1), of different lengths, with ratios
    inside and outside the clip range for both signs of the advantage."""
    trained = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.float)
    logp = torch.tensor([[0.0, -0.5, -1.0, -2.0], [0.0, 0.0, -0.1, 0.0], [-0.3, -3.0, 0.0, 0.0]])
    old = torch.tensor([[0.0, -0.7, -0.9, -1.0], [0.0, 0.0, -0.6, 0.0], [-0.2, -3.1, 0.0, 0.0]])
    ref = torch.tensor([[0.0, -0.4, -1.5, -2.2], [0.0, 0.0, -0.3, 0.0], [-0.25, -2.0, 0.0, 0.0]])
    advantage = torch.tensor([1.5, 1.5, -0.8])
    rollout_size = torch.tensor([2.0, 2.0, 1.0])
    return logp, old, ref, trained, advantage, rollout_size


def loss_by_hand(logp, old, ref, trained, advantage, rollout_size, eps, beta, algo):
    """The module docstring's formula, one scalar at a time."""
    S, total = len(logp), 0.0
    for s in range(S):
        policy, kl, n = 0.0, 0.0, 0
        A = float(advantage[s])
        for t in range(logp.shape[1]):
            if not trained[s, t]:
                continue
            n += 1
            lp, lo, lr = float(logp[s, t]), float(old[s, t]), float(ref[s, t])
            if algo == "grpo":
                ratio = math.exp(lp - lo)
                policy += -min(ratio * A, min(max(ratio, 1 - eps), 1 + eps) * A)
            else:
                policy += -A * lp
            kl += math.exp(lr - lp) - (lr - lp) - 1
        total += policy / n / float(rollout_size[s]) + beta * kl / n
    return total / S


@pytest.mark.parametrize("algo, beta", [("grpo", 0.01), ("grpo", 0.0), ("reinforce", 0.0)])
def test_loss_equals_the_formula_computed_by_hand(algo, beta):
    logp, old, ref, trained, advantage, rollout_size = hand_batch()
    loss, _ = train_rl.rl_loss(logp, old, ref, trained, advantage, rollout_size, n_sequences=3,
                               clip_ratio=0.2, beta=beta, algo=algo)
    expected = loss_by_hand(logp, old, ref, trained, advantage, rollout_size, 0.2, beta, algo)
    assert abs(float(loss) - expected) < 1e-6
    # micro-batches of the same batch add up to the same loss
    parts = [train_rl.rl_loss(logp[rows], old[rows], ref[rows], trained[rows], advantage[rows], rollout_size[rows],
                              n_sequences=3, clip_ratio=0.2, beta=beta, algo=algo)[0] for rows in ([0, 2], [1])]
    assert abs(float(sum(parts)) - expected) < 1e-6


def test_a_clipped_ratio_stops_the_gradient_and_an_unclipped_one_does_not():
    logp = torch.tensor([[math.log(1.5)], [math.log(1.1)]], requires_grad=True)
    zeros, trained = torch.zeros(2, 1), torch.ones(2, 1)
    loss, stats = train_rl.rl_loss(logp, zeros, zeros, trained, torch.tensor([1.0, 1.0]), torch.ones(2), 2,
                                   clip_ratio=0.2, beta=0.0, algo="grpo")
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[1, 0] < 0  # ratio 1.5 > 1.2 with A > 0: clipped
    assert stats["clipped"] == 1


def random_sequences(tok, n, advantage):
    torch.manual_seed(1)
    sequences = []
    for k in range(n):
        ids = torch.randint(0, tok.vocab_size, (12 + 3 * k,)).tolist()
        mask = [0] * 5 + [1] * (len(ids) - 5)
        sequences.append({"ids": ids, "mask": mask, "advantage": advantage, "rollout_size": n, "rollout": 0})
    return sequences


@pytest.mark.parametrize("advantage, zero", [(0.0, True), (1.0, False)])
def test_groups_with_identical_rewards_give_zero_policy_gradient(advantage, zero):
    """Identical rewards in a group mean zero advantages and so no policy gradient; a non-zero
    advantage on the same sequences does move the weights (the check can fail)."""
    from tokenizer import Tokenizer
    tok = Tokenizer()
    assert torch.equal(train_rl.advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), 3, "grpo"), torch.zeros(6))
    torch.manual_seed(0)
    model = M.GPT(M.GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, mlp_hidden=48, context=64))
    sequences = random_sequences(tok, 3, advantage)
    batch = list(range(3))
    with torch.no_grad():
        old, _ = train_rl.token_logprobs(model, sequences, batch, tok.pad_id, torch.device("cpu"))
    logp, trained = train_rl.token_logprobs(model, sequences, batch, tok.pad_id, torch.device("cpu"))
    loss, _ = train_rl.rl_loss(logp, old, None, trained, torch.full((3,), advantage), torch.full((3,), 3.0), 3,
                               clip_ratio=0.2, beta=0.0, algo="grpo")
    loss.backward()
    largest = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
    assert (largest == 0) == zero


def test_skipping_zero_advantage_sequences_leaves_the_policy_gradient_unchanged():
    """Training only the sequences of non-zero advantage, with the loss still divided by the count
    of all, gives the full batch's gradient when there is no KL term; with a KL term it differs
    (the zero-advantage sequences' KL is what is dropped), so the comparison can fail."""
    from tokenizer import Tokenizer
    tok = Tokenizer()
    torch.manual_seed(0)
    model = M.GPT(M.GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, mlp_hidden=48, context=64))
    sequences = random_sequences(tok, 2, 0.0) + random_sequences(tok, 2, 1.5) + random_sequences(tok, 1, -0.5)
    kept = train_rl.sequences_to_train(sequences)
    assert [s["advantage"] for s in kept] == [1.5, 1.5, -0.5]
    assert len(train_rl.sequences_to_train(random_sequences(tok, 3, 0.0))) == 1  # one stays for DDP's all-reduce

    def gradient(subset, beta):
        model.zero_grad()
        batch = list(range(len(subset)))
        with torch.no_grad():
            old, _ = train_rl.token_logprobs(model, subset, batch, tok.pad_id, torch.device("cpu"))
        logp, trained = train_rl.token_logprobs(model, subset, batch, tok.pad_id, torch.device("cpu"))
        ref = old - 0.3  # a reference model that differs from the policy on every token
        loss, _ = train_rl.rl_loss(logp, old, ref, trained, torch.tensor([s["advantage"] for s in subset]),
                                   torch.tensor([float(s["rollout_size"]) for s in subset]), len(sequences),
                                   clip_ratio=0.2, beta=beta, algo="grpo")
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    assert torch.allclose(gradient(sequences, 0.0), gradient(kept, 0.0), atol=1e-7)
    assert not torch.allclose(gradient(sequences, 0.5), gradient(kept, 0.5), atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Runs of main


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory):
    """A two-step SFT checkpoint of each mode on a 40-problem task (what RL starts from)."""
    root = tmp_path_factory.mktemp("sft")
    data_dir = str(root / "data")
    for mode in ("sosp", "apr"):
        assert train_sft.main(TINY_SFT_RUN + ["--mode", mode, "--steps", "2", "--eval-every", "2",
                                          "--data-dir", data_dir, "--out", str(root / mode)]) == 0
    return root


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_trained_log_probs_are_those_the_engine_sampled_with(sft_runs, monkeypatch, temperature):
    """The sequences RL trains on line up with the rollouts: for every token the model sampled,
    the training forward's log-probability (token_logprobs over rollout_sequences) equals the one
    the engine drew it with, at the sampling temperature; tokens it did not sample are not
    trained. A two-step model does not spawn by itself, so each root is made to write a
    demonstration's spawn block (those tokens are scored like sampled ones); its children and its
    call after the join then decode freely. A shifted mask, a wrong position or a join block
    counted as sampled would break the sums."""
    import rollout
    import search
    model, tok, _ = M.load_checkpoint(str(sft_runs / "apr"))
    problem = {"nums": [22, 26, 31, 53], "target": 27}
    record = next(r for r in (search.demonstrate(problem, i, "apr", 0, search.DEFAULTS["apr"]) for i in range(20))
                  if r["spawns"])
    parent = record["trace_dict"]["main_calls"][0]
    prompt = search.root_prompt(problem["nums"], problem["target"], True)
    script = tok.encode(parent[len(prompt):parent.index(search.SPAWN_CLOSE) + len(search.SPAWN_CLOSE)])
    real_sample, real_step = rollout.sample, rollout.Engine._step
    last_logits, drawn = [], []

    def keep_logits(logits, temperature=0.0, top_k=None, generator=None):
        last_logits[:] = list(logits)  # one row per thread that steps next, in the engine's order
        return real_sample(logits, temperature, top_k, generator)

    def scripted_step(self, i, token):
        t = self.threads[i]
        written = sum(t.mask)
        if t.parent is None and not t.spawns and written < len(script):
            token = script[written]  # the root writes the demonstration's first call
        row = last_logits.pop(0)
        drawn.append(float(torch.log_softmax(row / temperature, -1)[token]))
        return real_step(self, i, token)
    monkeypatch.setattr(rollout, "sample", keep_logits)
    monkeypatch.setattr(rollout.Engine, "_step", scripted_step)
    engine = rollout.Engine(model, tok, parallel=True, limits=rollout.Limits(max_total_tokens=1500), max_rows=16)
    results = engine.run([problem], samples=2, temperature=temperature, seed=1)
    assert all(r["children"] > 0 and len(r["threads"][0]["calls"]) == 2 for r in results)  # a spawn, a join
    sequences = train_rl.rollout_sequences(results, torch.zeros(len(results)))
    with torch.no_grad():
        logp, trained = train_rl.token_logprobs(model, sequences, list(range(len(sequences))), tok.pad_id,
                                                torch.device("cpu"), temperature)
    assert int(trained.sum()) == len(drawn) == sum(sum(s["mask"]) for s in sequences)
    assert float(logp.sum()) == pytest.approx(sum(drawn), rel=1e-4)


RL_RUN = ["--preset", "tiny", "--prompts", "2", "--group", "2", "--eval-every", "1", "--eval-problems", "2",
          "--quiet"]


@pytest.mark.parametrize("mode, algo, skip", [("apr", "grpo", False), ("sosp", "grpo", False),
                                             ("apr", "reinforce", False), ("apr", "grpo", True)])
def test_two_step_run_writes_an_rl_checkpoint_that_evaluation_reads(tmp_path, sft_runs, mode, algo, skip):
    out = tmp_path / "rl"
    assert train_rl.main(RL_RUN + ["--init", str(sft_runs / mode), "--algo", algo, "--steps", "2",
                                   "--out", str(out), "--skip-uniform-groups" if skip else "--no-skip-uniform-groups"]) == 0
    results = json.loads((out / "run.json").read_text())
    # every sequence trained, or (skipping) only those of non-zero advantage: a two-step SFT model
    # solves nothing, so every group's rewards are all 0 and one sequence alone is trained
    assert results["rl_config"]["skip_uniform_groups"] == skip
    for s in results["steps"]:
        if not skip:
            assert s["trained_sequences"] == s["sequences"]
        elif s["reward"] == 0:
            assert s["trained_sequences"] == 1
        else:
            assert 1 <= s["trained_sequences"] <= s["sequences"]
    assert not skip or any(s["reward"] == 0 for s in results["steps"])
    assert [h["step"] for h in results["history"]] == [0, 1, 2]
    assert [h["rollouts"] for h in results["history"]] == [8, 2, 8]  # all 8 val problems first and last
    assert len(results["steps"]) == 2
    model, tok, state = M.load_checkpoint(str(out))
    assert state["stage"] == "rl" and state["args"]["mode"] == mode and state["step"] == 2
    assert evaluate.run_facts(state)["method"] == ("APR" if mode == "apr" else "SoS+") + " after RL"
    # RL changed the weights it started from, and its first and last checks are greedy evaluations
    # of the SFT model and of the saved RL model on the same validation problems
    sft_model, _, sft_state = M.load_checkpoint(str(sft_runs / mode))
    assert any(not torch.equal(sft_state["model"][k], v) for k, v in state["model"].items())
    task = countdown.GameConfig(**sft_state["train_config"]["task"])
    problems = countdown.read_problems(countdown.problems_file(task, "val", 8, sft_state["args"]["data_dir"]))
    for check, checked in ((results["history"][0], sft_model), (results["history"][-1], model)):
        again = evaluate.evaluate(checked, tok, problems, parallel=mode == "apr")
        assert (check["correct"], check["total_tokens"]) == (again["correct"], again["total_tokens"])


def test_resumed_and_continued_runs_end_with_the_same_weights(tmp_path, sft_runs, monkeypatch, capsys):
    """A run killed in its last step and resumed, and a finished 2-step run continued to 3 steps,
    end with the weights of a 3-step run that went straight through; resuming to fewer steps
    than done is refused."""
    common = RL_RUN + ["--init", str(sft_runs / "apr"), "--eval-every", "1", "--eval-problems", "0"]
    args = common + ["--steps", "3"]
    assert train_rl.main(args + ["--out", str(tmp_path / "straight")]) == 0
    assert train_rl.main(common + ["--steps", "2", "--out", str(tmp_path / "continued")]) == 0
    assert train_rl.main(args + ["--out", str(tmp_path / "continued"), "--resume"]) == 0
    real = train_rl.step_problems

    def killed_in_step_3(problems, step, count, seed, draw=0):
        if step == 2:
            raise KeyboardInterrupt
        return real(problems, step, count, seed, draw)
    monkeypatch.setattr(train_rl, "step_problems", killed_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_rl.main(args + ["--out", str(tmp_path / "killed")])
    monkeypatch.setattr(train_rl, "step_problems", real)
    assert train_rl.main(args + ["--out", str(tmp_path / "killed"), "--resume"]) == 0
    straight = M.load_checkpoint(str(tmp_path / "straight"))[2]
    for other in ("killed", "continued"):
        resumed = M.load_checkpoint(str(tmp_path / other))[2]
        assert straight["step"] == resumed["step"] == 3
        for name, tensor in straight["model"].items():
            assert torch.equal(tensor, resumed["model"][name]), (other, name)
    capsys.readouterr()
    assert train_rl.main(common + ["--steps", "2", "--out", str(tmp_path / "continued"), "--resume"]) == 2
    assert "has done 3 steps, more than --steps 2" in capsys.readouterr().err


def test_same_prompts_draws_the_first_steps_prompts_at_every_step(tmp_path, sft_runs, monkeypatch):
    """--same-prompts (the check that the gradient raises the reward it sees) rolls out the
    prompts of step 0 at every step; without it each step draws its own."""
    drawn_for = []
    real = train_rl.step_problems

    def recording(problems, step, count, seed, draw=0):
        drawn_for.append(step)
        return real(problems, step, count, seed, draw)
    monkeypatch.setattr(train_rl, "step_problems", recording)
    args = RL_RUN + ["--init", str(sft_runs / "sosp"), "--steps", "3", "--eval-problems", "0", "--n-val", "2"]
    assert train_rl.main(args + ["--out", str(tmp_path / "same"), "--same-prompts"]) == 0
    assert drawn_for == [0, 0, 0]
    drawn_for.clear()
    assert train_rl.main(args + ["--out", str(tmp_path / "fresh")]) == 0
    assert drawn_for == [0, 1, 2]


def test_dynamic_sampling_keeps_groups_whose_rewards_differ_until_the_batch_is_full():
    """Groups of 2, batches of 2 problems: the first batch holds one informative group, the
    second two, so the batch fills from the second batch's first group and no third is drawn."""
    batches = [[1, 1, 0, 1], [1, 0, 0.5, 0.25], [0, 1, 1, 0]]
    asked = []

    def draw(k):
        asked.append(k)
        return [f"b{k}r{i}" for i in range(4)], torch.tensor(batches[k], dtype=torch.float)
    results, rewards, drawn, drawn_rewards = train_rl.fill_batch(draw, prompts=2, group=2, draws=3)
    assert asked == [0, 1]
    assert results == ["b0r2", "b0r3", "b1r0", "b1r1"] and rewards.tolist() == [0, 1, 1, 0]
    assert len(drawn) == 8 and drawn_rewards.tolist() == batches[0] + batches[1]
    # one draw: the batch as drawn, uniform groups included
    asked.clear()
    results, rewards, _, _ = train_rl.fill_batch(draw, prompts=2, group=2, draws=1)
    assert asked == [0] and rewards.tolist() == batches[0]


def test_dynamic_sampling_stands_by_the_last_batch_when_no_group_differs():
    def draw(k):
        return [f"b{k}r{i}" for i in range(4)], torch.zeros(4)
    results, rewards, drawn, _ = train_rl.fill_batch(draw, prompts=2, group=2, draws=3)
    assert results == ["b2r0", "b2r1", "b2r2", "b2r3"] and len(drawn) == 12


def test_a_run_with_dynamic_sampling_logs_the_groups_it_drew_and_kept(tmp_path, sft_runs):
    """A two-step SFT model solves nothing, so every group is uniform: each step draws its two
    batches and trains on the last."""
    out = tmp_path / "rl"
    assert train_rl.main(RL_RUN + ["--init", str(sft_runs / "apr"), "--steps", "2", "--draws", "2",
                                   "--eval-problems", "0", "--out", str(out)]) == 0
    steps = json.loads((out / "run.json").read_text())["steps"]
    assert [(s["groups_drawn"], s["groups_kept"]) for s in steps] == [(4, 2), (4, 2)]


def test_the_filter_keeps_problems_solved_sometimes_but_not_always():
    problems = [{"id": i} for i in range(5)]
    assert train_rl.informative(problems, [0, 1, 4, 3, 2], samples=4) == [{"id": 1}, {"id": 3}, {"id": 4}]


def test_a_filtered_run_counts_each_pool_problems_passes_and_draws_only_the_informative(tmp_path, sft_runs,
                                                                                       monkeypatch):
    """The verifier is replaced by one whose verdict follows the target: a multiple of 3 is always
    solved, one more than a multiple of 3 solved in its first sample of each pair, the rest never.
    The filter's counts must follow that rule, and RL must draw only the problems solved once."""
    turn = {}

    def reward(nums, target, text):
        if target % 3 != 1:
            return float(target % 3 == 0)
        turn[(tuple(nums), target)] = not turn.get((tuple(nums), target), False)
        return float(turn[(tuple(nums), target)])
    monkeypatch.setattr(countdown, "reward", reward)
    drawn, step_problems = [], train_rl.step_problems

    def spy(*args, **kwargs):
        picked = step_problems(*args, **kwargs)
        drawn.extend(picked)
        return picked
    monkeypatch.setattr(train_rl, "step_problems", spy)
    out = tmp_path / "rl"
    assert train_rl.main(RL_RUN + ["--init", str(sft_runs / "apr"), "--steps", "2", "--filter-samples", "2",
                                   "--filter-pool", "24", "--eval-problems", "0", "--out", str(out)]) == 0
    state = M.load_checkpoint(str(sft_runs / "apr"))[2]
    task = countdown.GameConfig(**state["train_config"]["task"])
    train = countdown.read_problems(countdown.problems_file(task, "train", state["train_config"]["n_train"],
                                                            state["args"]["data_dir"]))
    counts = json.loads((out / "filter.json").read_text())["counts"]
    assert counts == [{0: 2, 1: 1, 2: 0}[p["target"] % 3] for p in train[:24]]
    assert len(drawn) == 4 and all(p["target"] % 3 == 1 for p in drawn)


def test_a_filter_that_keeps_too_few_problems_says_so(tmp_path, capsys, sft_runs):
    """A two-step SFT model solves nothing, so no problem is solved sometimes."""
    assert train_rl.main(RL_RUN + ["--init", str(sft_runs / "apr"), "--filter-samples", "2", "--filter-pool", "4",
                                   "--out", str(tmp_path / "rl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "the filter kept 0 of 4 training problems" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--group", "1"], "GRPO needs --group of at least 2"),
    (["--draws", "0"], "--draws must be at least 1"),
    (["--filter-samples", "1"], "--filter-samples must be 0 (off) or at least 2"),
    (["--preset", "huge"], "unknown --preset"),
    (["--resume"], "no checkpoint"),
])
def test_bad_input_gets_one_clear_line(tmp_path, capsys, sft_runs, extra, message):
    assert train_rl.main(RL_RUN + ["--init", str(sft_runs / "apr"), "--out", str(tmp_path / "rl")] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_init_must_be_an_sft_checkpoint(tmp_path, capsys, sft_runs):
    out = tmp_path / "rl"
    assert train_rl.main(RL_RUN + ["--init", str(sft_runs / "apr"), "--steps", "1", "--out", str(out)]) == 0
    for init, message in ((out, "is not an SFT checkpoint"), (tmp_path / "nowhere", "no checkpoint at")):
        assert train_rl.main(RL_RUN + ["--init", str(init), "--out", str(tmp_path / "again")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_two_process_gloo_run_agrees_with_one_process_on_both_ranks_rollouts(tmp_path, sft_runs, monkeypatch):
    """torchrun with 2 CPU processes (gloo): each rank rolls out its half of the step's prompts
    with its own sampling seed, and DistributedDataParallel averages the gradients of a loss that
    divides by the sequences of both ranks. A single process that rolls out the two halves as the
    two ranks do and trains on all of them must end with the same weights. The stand-in reward
    (1 for a rollout text of even length) gives the groups rewards that differ, so the policy
    gradient acts, not only the KL term."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "experiments", "rl_with_a_stand_in_reward.py")
    args = ["--init", str(sft_runs / "apr"), "--steps", "2", "--prompts", "4", "--group", "2", "--n-val", "2",
            "--eval-problems", "0", "--no-skip-uniform-groups", "--quiet", "--device", "cpu"]  # gloo: CPU tensors
    returncode, stderr = run_torchrun([script, *args, "--out", str(tmp_path / "ddp")], cwd=root)
    assert returncode == 0, torchrun_failure(stderr)

    spec = importlib.util.spec_from_file_location("stand_in", script)
    stand_in = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stand_in)
    monkeypatch.setattr(countdown, "reward", stand_in.stand_in_reward)
    real = train_rl.roll_out

    def both_ranks(engine, run, cfg, args, step, rank, world):
        halves = [real(engine, run, cfg, args, step, r, 2) for r in (0, 1)]
        return tuple(torch.cat([a, b]) if torch.is_tensor(a) else a + b for a, b in zip(*halves))
    monkeypatch.setattr(train_rl, "roll_out", both_ranks)
    assert train_rl.main([*args, "--out", str(tmp_path / "single")]) == 0

    ddp, single = (M.load_checkpoint(str(tmp_path / run))[2] for run in ("ddp", "single"))
    assert [s["reward"] for s in ddp["steps_log"]] == [s["reward"] for s in single["steps_log"]]
    assert 0 < ddp["steps_log"][0]["reward"] < 1  # rewards differ within the step: a policy gradient
    assert all(s["sequences"] == t["sequences"] >= 8 for s, t in zip(ddp["steps_log"], single["steps_log"]))
    init = M.load_checkpoint(str(sft_runs / "apr"))[2]["model"]
    assert any(not torch.equal(init[k], v) for k, v in ddp["model"].items())
    for name, tensor in single["model"].items():
        assert torch.allclose(tensor, ddp["model"][name], atol=1e-5), name


def test_learning_rate_warms_up_linearly_then_stays_constant():
    cfg = train_rl.RLConfig(lr=1e-4, warmup=4)
    assert [train_rl.learning_rate(s, cfg) for s in range(6)] == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4])
    assert train_rl.learning_rate(0, train_rl.RLConfig(lr=1e-4)) == 1e-4  # the authors': no warmup


def test_tempered_log_probs_are_those_of_softmax_of_logits_over_temperature():
    """The policy RL trains at temperature T: each sampled token scored under softmax(logits / T),
    computed here the slow way from the model's plain logits; T = 1 is the model's own log-probs,
    and below 1 every target that is the model's argmax gets more likely."""
    torch.manual_seed(0)
    model = M.GPT(M.GPTConfig(vocab_size=50, n_layer=1, n_embd=32, n_head=2, mlp_hidden=64, context=64))
    sequences = [{"ids": list(torch.randint(0, 47, (n,))), "mask": [0] * 3 + [1] * (n - 3)} for n in (9, 14)]
    cpu = torch.device("cpu")
    with torch.no_grad():
        idx, targets = train_sft.collate([(s["ids"], s["mask"]) for s in sequences], [0, 1], 49, cpu)
        logits = model(idx)
        by_t = {}
        for t in (1.0, 0.5, 2.0):
            logp, trained = train_rl.token_logprobs(model, sequences, [0, 1], 49, cpu, temperature=t)
            slow = torch.log_softmax(logits / t, dim=-1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
            assert torch.allclose(logp, slow * trained, atol=1e-5)
            by_t[t] = logp
        argmax = logits.argmax(-1) == targets
    assert torch.equal(trained, (targets != -1).float())
    assert ((by_t[0.5] >= by_t[1.0] - 1e-6) | ~argmax).all()  # the argmax token's probability can only rise
    assert not torch.allclose(by_t[0.5], by_t[1.0])


def test_a_check_on_the_first_checks_problems_states_what_it_gained_and_lost():
    """Hand-counted: against step 0 ([1, 0, 0, 1, 0]) the later check gains problems 1 and 2 and
    loses 3; a check on fewer problems (a subset) makes no paired claim."""
    def check(step, correct):
        n = len(correct)
        return {"step": step, "accuracy": sum(correct) / n, "accuracy_95ci": (0.0, 1.0), "rollouts": n,
                "total_tokens": 100.0, "children": 2.0, "seconds": 1.0, "correct": correct}
    first = check(0, [1, 0, 0, 1, 0])
    line = train_rl.describe(check(14, [1, 1, 1, 0, 0]), first)
    assert "+2/-1 against step 0" in line
    assert "against" not in train_rl.describe(check(4, [1, 1]), first)
    assert "against" not in train_rl.describe(first, first)
