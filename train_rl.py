"""
End-to-end reinforcement learning over whole thread trees, parent and children together.

    python train_rl.py --init out/sft_apr_tiny                   # GRPO on the tiny preset
    python train_rl.py --init out/sft_sosp_tiny --algo reinforce
    python train_rl.py --init out/sft_apr_tiny --resume          # continue a killed run
    python train_rl.py --init out/sft_apr_tiny --resume --steps 28   # or a finished one, to more steps
    python train_rl.py --init out/sft_sosp_tiny --same-prompts --prompts 16 --group 8 --steps 10
                                                                 # a check: the reward it trains on climbs
    torchrun --nproc_per_node=4 train_rl.py --init out/sft_apr_small --preset small

Each step draws `prompts` training problems and rolls each out `group` times at temperature 1.0 (the
paper's; `--temperature` for another) with the spawn/join engine (`rollout.Engine`; the samples of a
prompt fork its prefilled cache). The strict verifier scores every rollout: reward 1 if its final
answer is correct, else 0. A rollout is a tree of threads, and every LM call in it (each parent
call, each child) becomes one training sequence carrying the rollout's advantage; only tokens the
model sampled are trained (the engine's mask), EOS included. So the parent learns when to spawn and
what to make of its children's results, and the children learn to search, from the single reward of
the whole tree.

GRPO, as the paper ran it:

    advantage  A = (r - mean of the group's rewards) / (std of the group's rewards + 1e-10)
    ratio      rho_t = exp(logp_t - logp_old_t)        logp_old: the policy that sampled
    policy     l_t = -min(rho_t A, clip(rho_t, 1 - eps, 1 + eps) A)
    KL         k_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (k3, to the frozen SFT model)
    loss       (1 / S) sum over sequences s of [ mean_t l_t / n(s) + beta mean_t k_t ]

S is the number of sequences in the batch and n(s) the number of sequences in the rollout that s
belongs to, so a rollout of many threads weighs as much as one of few. Each batch of rollouts is
used for `inner` optimizer steps. `--algo reinforce` is the plain variant (see `advantages`).
Two ways to spend rollouts only where rewards differ: `--draws` (dynamic sampling, online) and
`--filter-samples` (problems chosen before RL by the SFT model's sampled pass rate; about 3
points over the preset's RL in both of two draws, docs/experiments.md).

Outputs: `out/rl_<mode>_<preset>/ckpt.pt` (stage "rl"; `evaluate.py --ckpt` reads it as "after
RL") and `run.json` with the arguments, the log of every step and the validation history.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist

import countdown
import model as M
from evaluate import evaluate, paired_change
from rollout import Engine, Limits, checkpoint_mode
from train_sft import collate, micro_batches, setup_distributed, teardown_distributed

# ---------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class RLConfig:
    prompts: int = 64              # problems per step, all ranks
    group: int = 5                 # rollouts per problem
    steps: int = 150
    inner: int = 2                 # optimizer steps on each batch of rollouts
    lr: float = 1e-5               # constant after the warmup, as the authors ran it
    warmup: int = 0                # steps of linear learning-rate warmup (the authors: none)
    weight_decay: float = 0.01
    clip_ratio: float = 0.2        # eps of the clipped ratio
    grad_clip: float = 1.0
    beta: float | None = None      # KL weight; None: 0.001 for APR, 0.01 for SoS+ (the authors' values)
    temperature: float = 1.0
    micro_tokens: int = 16384      # most tokens per forward pass (padding included)
    max_rows: int = 256            # KV-cache rows of the rollout engine
    eval_every: int = 10           # steps between validation checks
    eval_problems: int = 200       # validation problems decoded greedily at each check (first and last: all)
    skip_uniform_groups: bool = False  # train no sequence of zero advantage (see `sequences_to_train`)
    draws: int = 1                 # batches of problems drawn at most per step; above 1: `fill_batch`
    filter_samples: int = 0        # above 0: train only on problems the SFT model sometimes solves (`informative`)
    filter_pool: int = 256         # training problems the filter samples, the first of the split


RL_PRESETS = {
    "paper": RLConfig(),
    "small": RLConfig(steps=100, eval_every=20),
    # a 2-core CPU, about 10 minutes for APR: 8 problems x 8 samples at temperature 0.5, 14 steps
    # (896 rollouts), lr 3e-5, zero-advantage sequences untrained (docs/experiments.md: "RL on
    # tiny3, and checks of the gradient", "RL of the tiny preset: steps, skipping, learning rate")
    "tiny": RLConfig(prompts=8, group=8, steps=14, lr=3e-5, temperature=0.5, micro_tokens=4096, eval_every=4,
                     eval_problems=0, skip_uniform_groups=True),
}
PAPER_BETA = {"apr": 0.001, "sosp": 0.01}


# ---------------------------------------------------------------------------------------------
# Rollouts -> training sequences


def advantages(rewards: torch.Tensor, group: int, algo: str) -> torch.Tensor:
    """Per-rollout advantages from rewards laid out group by group, (prompts * group,).

    grpo: (r - group mean) / (group std + 1e-10), the std unbiased as torch computes it.
    reinforce: r - group mean. What this plain variant drops, and why that is sound here:
    - no division by the std: it only rescales each group's step (groups of rare successes get
      larger steps in GRPO); the mean baseline alone already removes the bias-free variance;
    - no ratio and no clipping: with one optimizer step on freshly sampled rollouts the ratio is
      exactly 1, and the clipped surrogate's gradient equals the policy gradient;
    - no KL to the SFT model: the reward is an exact verifier, not a learned model that the
      policy could exploit, so nothing needs protecting from drift but the learning rate.
    Either way a group whose rewards are all equal has zero advantage: no policy gradient."""
    r = rewards.view(-1, group).float()
    centred = r - r.mean(dim=1, keepdim=True)
    if algo == "grpo":
        centred = centred / (r.std(dim=1, keepdim=True) + 1e-10)
    return centred.reshape(-1)


def rollout_sequences(results: list[dict], advantage: torch.Tensor) -> list[dict]:
    """Every LM call of every rollout as a training sequence: its token ids, the mask of sampled
    tokens, its rollout's advantage and the number of sequences in that rollout."""
    sequences = []
    for k, result in enumerate(results):
        calls = [call for thread in result["threads"] for call in thread["calls"] if any(call[1][1:])]
        for tokens, mask in calls:
            sequences.append({"ids": tokens, "mask": mask, "advantage": float(advantage[k]),
                              "rollout_size": len(calls), "rollout": k})
    return sequences


def sequences_to_train(sequences: list[dict]) -> list[dict]:
    """The sequences worth a forward and backward pass: those of non-zero advantage. A group whose
    rewards are all equal (on a small model, most often all 0) has zero advantage, so its sequences
    add nothing to the policy gradient; all they would add is their KL term, at the authors' beta
    (0.001 for APR) a pull too small to pay for their passes. The loss still divides by the number of all sequences, so the policy
    gradient is exactly that of the full batch (tested).
    One sequence stays when none has an advantage, so that every DDP rank joins the all-reduce."""
    kept = [s for s in sequences if s["advantage"] != 0]
    return kept or sequences[:1]


# ---------------------------------------------------------------------------------------------
# The loss


def token_logprobs(model, sequences: list[dict], batch: list[int], pad_id: int, device, temperature: float = 1.0):
    """(log-probabilities of each target token (B, T), trained-token mask (B, T)) of a micro-batch,
    under the policy that sampled them: the model's distribution at `temperature`. Training that
    tempered policy trains greedy decoding too, since dividing logits by a temperature never
    changes which token is the most likely."""
    idx, targets = collate([(s["ids"], s["mask"]) for s in sequences], batch, pad_id, device)
    with M.autocast(device):
        logp = model(idx, targets, reduction="none", temperature=temperature)
    return logp.float(), (targets != -1).float()


def rl_loss(logp, old_logp, ref_logp, trained, advantage, rollout_size, n_sequences: int, clip_ratio: float,
            beta: float, algo: str) -> tuple[torch.Tensor, dict]:
    """The loss of a micro-batch (B sequences, T positions): its share of the batch's loss, so
    that summing over micro-batches gives the formula in the module docstring.

    logp, old_logp, ref_logp, trained: (B, T); advantage, rollout_size: (B,). With algo
    "reinforce" the policy term is -A logp_t and there is no KL (ref_logp may be None)."""
    tokens = trained.sum(dim=1).clamp(min=1)
    A = advantage[:, None]
    if algo == "grpo":
        ratio = torch.exp(logp - old_logp)
        policy = -torch.min(ratio * A, torch.clamp(ratio, 1 - clip_ratio, 1 + clip_ratio) * A)
        clipped = ((ratio - 1).abs() > clip_ratio).float()
    else:
        policy, clipped = -A * logp, torch.zeros_like(logp)
    per_sequence = (policy * trained).sum(dim=1) / tokens / rollout_size
    kl = torch.zeros_like(per_sequence)
    if beta and ref_logp is not None:
        delta = ref_logp - logp
        kl = ((torch.exp(delta) - delta - 1) * trained).sum(dim=1) / tokens
    loss = (per_sequence + beta * kl).sum() / n_sequences
    stats = {"kl": float(kl.detach().sum()), "clipped": float((clipped * trained).sum()), "tokens": float(trained.sum())}
    return loss, stats


# ---------------------------------------------------------------------------------------------
# Training


def load_init(path: str, device):
    """The SFT checkpoint RL starts from: (model, tokenizer, state); ValueError for anything else."""
    model, tokenizer, state = M.load_checkpoint(path, device)
    if state.get("stage") != "sft":
        raise ValueError(f"--init {path} is not an SFT checkpoint (stage {state.get('stage')!r}); pass a run "
                         f"folder of train_sft.py, e.g. --init out/sft_apr_tiny")
    checkpoint_mode(state, path)
    if "task" not in state.get("train_config", {}):
        raise ValueError(f"--init {path} does not say which task it was trained on (train_config)")
    return model, tokenizer, state


def learning_rate(step: int, cfg: RLConfig) -> float:
    """Constant after a linear warmup. A warmup keeps Adam's first updates small: its first step
    moves every weight by about the learning rate, whatever the size of the gradient."""
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else cfg.lr


def step_problems(problems: list[dict], step: int, count: int, seed: int, draw: int = 0) -> list[dict]:
    """The prompts of one step's `draw`-th batch: a pure function of (seed, step, draw), so a
    resumed run draws the same."""
    rng = random.Random(f"rl:{seed}:{step}" + (f":{draw}" if draw else ""))
    return [problems[i] for i in rng.sample(range(len(problems)), count)]


def fill_batch(draw, prompts: int, group: int, draws: int):
    """Dynamic sampling (DAPO): a group whose rollouts all got the same reward has no advantage
    and teaches nothing, so draw batches of problems and keep only groups whose rewards differ,
    until `prompts` of them or `draws` batches. `draw(k)` rolls out the k-th batch (`group`
    rollouts per problem, in order) and returns (results, rewards). With draws=1 the first batch
    is the step's, as drawn; if no group differs in any batch, the last one stands (all zero
    advantage). Returns (kept results, kept rewards, every drawn result, every drawn reward)."""
    kept, kept_rewards, drawn, drawn_rewards = [], [], [], []
    for k in range(draws):
        results, rewards = draw(k)
        drawn += results
        drawn_rewards.append(rewards)
        if draws == 1:
            return results, rewards, drawn, rewards
        for g in range(0, len(results), group):
            r = rewards[g:g + group]
            if len(kept) < prompts * group and bool(r.min() != r.max()):
                kept += results[g:g + group]
                kept_rewards.append(r)
        if len(kept) == prompts * group:
            break
    if not kept:
        return results, rewards, drawn, torch.cat(drawn_rewards)
    return kept, torch.cat(kept_rewards), drawn, torch.cat(drawn_rewards)


def pass_counts(engine: Engine, problems: list[dict], samples: int, temperature: float, seed: int, rank: int,
                world: int) -> list[int]:
    """How many of `samples` rollouts of each problem the verifier accepts, in the problems' order;
    each rank rolls out every world-th problem and the counts are gathered."""
    share = problems[rank::world]
    results = engine.run(share, samples=samples, temperature=temperature, seed=seed + rank)
    counts = [int(sum(countdown.reward(r["nums"], r["target"], r["text"]) for r in results[i:i + samples]))
              for i in range(0, len(results), samples)]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, counts)
        counts = [gathered[i % world][i // world] for i in range(len(problems))]
    return counts


def informative(problems: list[dict], counts: list[int], samples: int) -> list[dict]:
    """The problems solved in some of their samples but not in all: the offline form of dynamic
    sampling's filter. A problem the model never (or always) solves gives GRPO a group of equal
    rewards, hence no gradient, so RL's rollouts are spent where they can teach."""
    return [p for p, c in zip(problems, counts) if 0 < c < samples]


def filter_problems(engine: Engine, run: dict, cfg: RLConfig, args, run_dir: str, rank: int, world: int, log):
    """The training problems RL draws from under `--filter-samples`: those of the pool the SFT
    model sometimes solves. The counts are kept in the run folder, so a resumed run reuses them."""
    path = os.path.join(run_dir, "filter.json")
    pool = run["train"][:cfg.filter_pool]
    if args.resume and os.path.exists(path):
        with open(path) as f:
            counts = json.load(f)["counts"]
    else:
        began = time.time()
        counts = pass_counts(engine, pool, cfg.filter_samples, cfg.temperature, args.seed * 1_000_003 - 1, rank, world)
        if rank == 0:
            countdown.write_atomically(path, [json.dumps({"samples": cfg.filter_samples, "counts": counts}) + "\n"])
        log(f"filter: {cfg.filter_samples} samples of {len(pool)} training problems in {time.time() - began:.0f} s")
    kept = informative(pool, counts, cfg.filter_samples)
    log(f"filter: {len(kept)} problems solved sometimes, {counts.count(0)} never, "
        f"{counts.count(cfg.filter_samples)} always")
    if len(kept) < cfg.prompts:
        raise ValueError(f"the filter kept {len(kept)} of {len(pool)} training problems, fewer than --prompts "
                         f"{cfg.prompts}; raise --filter-pool or --filter-samples")
    return kept


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Reinforcement learning (GRPO or REINFORCE) from an SFT checkpoint, "
                                                 "over whole spawn/join thread trees.")
    parser.add_argument("--init", required=True, help="run folder or checkpoint of train_sft.py")
    parser.add_argument("--algo", default="grpo", choices=["grpo", "reinforce"], help="grpo (the paper's) or reinforce")
    parser.add_argument("--preset", default="tiny", help="tiny (CPU), small (one GPU) or paper")
    parser.add_argument("--out", default=None, help="run folder (default out/rl_<mode>_<preset>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run folder's checkpoint: a killed run, or a finished one to a larger --steps")
    parser.add_argument("--steps", type=int, help="optimizer steps on fresh rollouts")
    parser.add_argument("--prompts", type=int, help="problems per step, all ranks")
    parser.add_argument("--group", type=int, help="rollouts per problem")
    parser.add_argument("--inner", type=int, help="optimizer steps per batch of rollouts (grpo)")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--warmup", type=int, help="steps of linear learning-rate warmup")
    parser.add_argument("--temperature", type=float, help="sampling temperature of the rollouts (the paper: 1.0)")
    parser.add_argument("--beta", type=float, help="KL weight (grpo)")
    parser.add_argument("--eval-every", type=int,
                        help="steps between validation checks and checkpoints (0: only at the end)")
    parser.add_argument("--eval-problems", type=int,
                        help="problems decoded greedily at each check between the first and last (0: none)")
    parser.add_argument("--n-val", type=int, help="validation problems at the first and last check (default: the SFT run's)")
    parser.add_argument("--skip-uniform-groups", action=argparse.BooleanOptionalAction, default=None,
                        help="train only sequences of non-zero advantage (the tiny preset does; the paper's does not)")
    parser.add_argument("--draws", type=int,
                        help="dynamic sampling: draw up to this many batches of problems per step, keeping only "
                             "groups whose rewards differ until the batch is full (default 1: off)")
    parser.add_argument("--filter-samples", type=int,
                        help="sample each of the first --filter-pool training problems this many times before RL "
                             "and train only on those solved sometimes but not always (0: off)")
    parser.add_argument("--filter-pool", type=int, help="training problems the filter samples (default 256)")
    parser.add_argument("--same-prompts", action="store_true",
                        help="a check, not training: every step draws the first step's prompts, so the "
                             "sampled reward on them must climb if the gradient is right")
    parser.add_argument("--seed", type=int, default=0, help="prompt order and sampling")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--quiet", action="store_true", help="no per-step log lines")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return train(args)
    except ValueError as error:
        print(f"train_rl.py: error: {error}", file=sys.stderr)
        return 2


def rl_config(args) -> RLConfig:
    """The preset with the command line's overrides."""
    if args.preset not in RL_PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}; use one of {', '.join(RL_PRESETS)}")
    overrides = {k: getattr(args, k) for k in ("steps", "prompts", "group", "inner", "lr", "warmup", "temperature",
                                                "beta", "eval_every", "eval_problems", "skip_uniform_groups", "draws",
                                                "filter_samples", "filter_pool")
                 if getattr(args, k) is not None}
    cfg = replace(RL_PRESETS[args.preset], **overrides)
    for name in ("steps", "prompts", "group", "inner", "micro_tokens", "max_rows", "draws", "filter_pool"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(cfg, name)})")
    for name in ("warmup", "eval_every", "eval_problems", "filter_samples"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(cfg, name)})")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"--lr must be a finite positive number (got {cfg.lr})")
    if not (cfg.temperature > 0 and math.isfinite(cfg.temperature)):
        raise ValueError(f"--temperature must be a finite positive number: RL samples (got {cfg.temperature})")
    if cfg.beta is not None and not (cfg.beta >= 0 and math.isfinite(cfg.beta)):
        raise ValueError(f"--beta must be a finite number of 0 or more (got {cfg.beta})")
    if args.n_val is not None and args.n_val < 1:
        raise ValueError(f"--n-val must be at least 1 (got {args.n_val})")
    if cfg.filter_samples == 1:
        raise ValueError("--filter-samples must be 0 (off) or at least 2: one sample cannot be solved sometimes "
                         "but not always")
    if args.algo == "grpo" and cfg.group < 2:
        raise ValueError(f"GRPO needs --group of at least 2: its advantages compare the rollouts of one problem "
                         f"(got {cfg.group}); use --group 5, or --algo reinforce")
    return cfg


def recorded_config(args) -> dict:
    """What fixes a run's result besides its SFT checkpoint, as its run.json records it:
    `pipeline.py` compares this with a finished run before letting it stand in for a stage."""
    return {"rl_config": asdict(rl_config(args))}


def setup(args, cfg: RLConfig, device, log) -> dict:
    """What a run needs besides its config: the model to train and its tokenizer, the frozen
    reference for the KL term (None without one), the task's problems and the SFT run's facts."""
    model, tokenizer, init_state = load_init(args.init, device)
    sft_args, sft_config = init_state["args"], init_state["train_config"]
    mode = sft_args["mode"]
    beta = 0.0 if args.algo == "reinforce" else (cfg.beta if cfg.beta is not None else PAPER_BETA[mode])
    reference = None
    if beta:
        reference = M.load_checkpoint(args.init, device)[0].eval()
        for p in reference.parameters():
            p.requires_grad_(False)
    task = countdown.GameConfig(**sft_config["task"])
    data_dir, n_train = sft_args.get("data_dir", "data"), sft_config["n_train"]
    n_val = args.n_val or sft_config["n_val"]
    return {"model": model, "tokenizer": tokenizer, "reference": reference, "beta": beta, "mode": mode,
            "inner": cfg.inner if args.algo == "grpo" else 1,  # reinforce: one on-policy step per batch
            "sft_args": sft_args, "sft_config": sft_config,
            "train": countdown.read_problems(countdown.problems_file(task, "train", n_train, data_dir, log=log)),
            "val": countdown.read_problems(countdown.problems_file(task, "val", n_val, data_dir, log=log))}


def roll_out(engine: Engine, run: dict, cfg: RLConfig, args, step: int, rank: int, world: int):
    """This rank's share of the step's prompts, `group` rollouts each, scored by the verifier and
    filled by dynamic sampling when `cfg.draws` > 1: (kept results, their rewards, training
    sequences, every drawn result, every drawn reward)."""
    local = cfg.prompts // world

    def draw(k):
        drawn = step_problems(run["train"], 0 if args.same_prompts else step, cfg.prompts, args.seed, k)
        results = engine.run(drawn[rank * local:(rank + 1) * local], samples=cfg.group, temperature=cfg.temperature,
                             seed=(args.seed * 1_000_003 + step) * 1009 + rank + k * 1_000_000_007)
        return results, torch.tensor([countdown.reward(r["nums"], r["target"], r["text"]) for r in results])
    results, rewards, drawn, drawn_rewards = fill_batch(draw, local, cfg.group, cfg.draws)
    sequences = rollout_sequences(results, advantages(rewards, cfg.group, args.algo))
    return results, rewards, sequences, drawn, drawn_rewards


def rollout_means(results: list[dict], rewards: torch.Tensor, world: int, device) -> dict:
    """The step's mean reward, children and total tokens per rollout, over every rank's rollouts."""
    if world == 1:
        return {"reward": float(rewards.float().mean()),
                "children": sum(r["children"] for r in results) / len(results),
                "total_tokens": sum(r["total_tokens"] for r in results) / len(results)}
    sums = torch.tensor([float(rewards.sum()), sum(r["children"] for r in results),
                         sum(r["total_tokens"] for r in results), len(results)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return {"reward": float(sums[0] / sums[3]), "children": float(sums[1] / sums[3]),
            "total_tokens": float(sums[2] / sums[3])}


def update(run: dict, ddp_model, optimizer, sequences: list[dict], cfg: RLConfig, algo: str, world: int,
           device) -> dict:
    """`inner` optimizer steps on one batch of rollouts' sequences; returns the step's statistics.
    The sampling policy's log-probs are those of the first pass, taken before any update, so no
    separate forward pass is needed for them."""
    model, pad_id, beta = run["model"], run["tokenizer"].pad_id, run["beta"]
    counts = torch.tensor([len(sequences)], dtype=torch.float64, device=device)  # the loss divides by all
    if cfg.skip_uniform_groups:
        sequences = sequences_to_train(sequences)
    batches = micro_batches(range(len(sequences)), [len(s["ids"]) - 1 for s in sequences], cfg.micro_tokens)
    if world > 1:
        dist.all_reduce(counts)
    n_sequences = int(counts)
    with torch.no_grad():  # the frozen reference's log-probs, for the KL term
        ref = [token_logprobs(run["reference"], sequences, b, pad_id, device, cfg.temperature)[0] if beta else None
               for b in batches]
    old = [None] * len(batches)
    totals = {"kl": 0.0, "clipped": 0.0, "tokens": 0.0, "loss": 0.0}
    for _ in range(run["inner"]):
        for k, batch in enumerate(batches):
            # gradients of all but the last micro-batch stay local; the last one's all-reduce carries all
            local = world > 1 and k < len(batches) - 1
            with (ddp_model.no_sync() if local else contextlib.nullcontext()):
                logp, trained = token_logprobs(ddp_model, sequences, batch, pad_id, device, cfg.temperature)
                if old[k] is None:
                    old[k] = logp.detach()
                adv = torch.tensor([sequences[i]["advantage"] for i in batch], device=device)
                size = torch.tensor([sequences[i]["rollout_size"] for i in batch], device=device, dtype=torch.float)
                loss, stats = rl_loss(logp, old[k], ref[k], trained, adv, size, n_sequences, cfg.clip_ratio, beta, algo)
                (loss * world).backward()  # DDP averages over ranks; the loss is already a share of the global mean
            for key in stats:
                totals[key] += stats[key]
            totals["loss"] += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"loss": totals["loss"] / run["inner"], "kl": totals["kl"] / max(1, len(sequences) * run["inner"]),
            "clipped": totals["clipped"] / max(1, totals["tokens"]), "sequences": n_sequences,
            "trained_sequences": len(sequences)}


def validate(run: dict, cfg: RLConfig, step: int, full: bool) -> dict:
    """Greedy accuracy on the validation problems (all of them when `full`)."""
    began = time.time()
    n = len(run["val"]) if full else cfg.eval_problems
    metrics = evaluate(run["model"], run["tokenizer"], run["val"][:n], parallel=run["mode"] == "apr",
                       max_rows=cfg.max_rows)
    keep = ("rollouts", "accuracy", "accuracy_95ci", "total_tokens", "sequential_tokens", "children", "correct")
    return {"step": step, **{k: metrics[k] for k in keep}, "seconds": time.time() - began}


def describe(m: dict, first: dict | None = None) -> str:
    """A check's line; when it decoded the same problems as the `first` check, also what changed."""
    low, high = m["accuracy_95ci"]
    paired = ""
    if first is not None and m is not first and len(first["correct"]) == len(m["correct"]):
        change = paired_change(first["correct"], m["correct"])
        paired = f" (+{change['gained']}/-{change['lost']} against step {first['step']}, McNemar p={change['p']:.2g})"
    return (f"step {m['step']} | greedy accuracy {m['accuracy']:.1%} [{low:.1%}, {high:.1%}] "
            f"on {m['rollouts']} problems{paired} | {m['total_tokens']:,.0f} total tokens | "
            f"{m['children']:.2f} children | {m['seconds']:.0f} s")


def describe_config(cfg: RLConfig, run: dict) -> str:
    return (f"{cfg.prompts} prompts x {cfg.group} rollouts per step, {cfg.steps} steps, lr {cfg.lr:g} "
            f"(warmup {cfg.warmup}), temperature {cfg.temperature:g}, beta {run['beta']:g}, {run['inner']} inner "
            f"step(s){'; zero-advantage sequences skipped' if cfg.skip_uniform_groups else ''}"
            + (f"; dynamic sampling, up to {cfg.draws} batches per step" if cfg.draws > 1 else ""))


def describe_step(entry: dict, steps: int, eta_minutes: float) -> str:
    kept, drawn = entry["groups_kept"], entry["groups_drawn"]
    return (f"step {entry['step']}/{steps} | reward {entry['reward']:.3f} | kl {entry['kl']:.4f} | "
            f"clipped {entry['clipped']:.1%} | trained {entry['trained_sequences']}/{entry['sequences']} | "
            + (f"groups kept {kept}/{drawn} | " if drawn > kept else "")
            + f"children {entry['children']:.2f} | tokens {entry['total_tokens']:,.0f} | "
            f"rollouts {entry['rollout_seconds']:.0f} s, training {entry['train_seconds']:.0f} s | "
            f"ETA {eta_minutes:.1f} min")


def train(args) -> int:
    run_began = time.time()
    cfg = rl_config(args)
    rank, world, device = setup_distributed(args.device)
    master = rank == 0
    # flushed lines: a log redirected to a file (nohup ... > out/run.log) shows progress as it happens
    log = functools.partial(print, flush=True) if master else (lambda *a, **k: None)
    if cfg.prompts % world:
        raise ValueError(f"{cfg.prompts} prompts per step do not split over {world} ranks")
    run = setup(args, cfg, device, log)
    if cfg.prompts > len(run["train"]):
        raise ValueError(f"--prompts {cfg.prompts} is more than the {len(run['train']):,} training problems of "
                         f"{args.init}; each step draws distinct problems")
    model, tokenizer, mode = run["model"], run["tokenizer"], run["mode"]
    run_dir = countdown.ensure_folder(args.out or os.path.join("out", f"rl_{mode}_{args.preset}"))
    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
    step, history, steps_log = 0, [], []
    if args.resume:
        step, history, steps_log = resume(args, cfg, ckpt_path, model, tokenizer, optimizer, device, log)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    log(f"RL ({args.algo}) of the {mode} model {args.init}: {describe_config(cfg, run)}; "
        f"{world} process(es) on {device.type}")

    def save():
        if master:
            # mode, task and conditioning stay those of the SFT run, so evaluate.py reads this as that model after RL
            M.save_checkpoint(ckpt_path, model, tokenizer, args={**run["sft_args"], **vars(args), "mode": mode},
                              stage="rl", step=step, history=history, steps_log=steps_log,
                              optimizer=optimizer.state_dict(), train_config=run["sft_config"], rl_config=asdict(cfg))

    if step == 0 and master:
        history.append(validate(run, cfg, step, full=True))
        log(describe(history[-1]))
    engine = Engine(model, tokenizer, parallel=mode == "apr", limits=Limits(), max_rows=cfg.max_rows)
    if cfg.filter_samples:
        run["train"] = filter_problems(engine, run, cfg, args, run_dir, rank, world, log)
    started, first_step = time.time(), step
    while step < cfg.steps:
        began = time.time()
        results, rewards, sequences, drawn, drawn_rewards = roll_out(engine, run, cfg, args, step, rank, world)
        rollout_seconds, began = time.time() - began, time.time()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        stats = update(run, ddp_model, optimizer, sequences, cfg, args.algo, world, device)
        step += 1
        # the reward, children and tokens of every rollout drawn: the policy's, not the kept groups'
        steps_log.append({"step": step, **rollout_means(drawn, drawn_rewards, world, device), **stats,
                          "groups_drawn": len(drawn) // cfg.group, "groups_kept": len(results) // cfg.group,
                          "rollout_seconds": rollout_seconds, "train_seconds": time.time() - began})
        if not args.quiet and master:
            eta = (time.time() - started) / (step - first_step) * (cfg.steps - step)
            log(describe_step(steps_log[-1], cfg.steps, eta / 60))
        last = step == cfg.steps
        if last or (cfg.eval_every and step % cfg.eval_every == 0):
            if master and (last or cfg.eval_problems):
                history.append(validate(run, cfg, step, full=last))
                log(describe(history[-1], history[0]))
            save()
    if master:
        finish(run_dir, args, cfg, run, history, steps_log, time.time() - run_began, ckpt_path, log)
    teardown_distributed(world)
    return 0


# what a resumed run may change: they decide what is checked and how often, and where the run stops
# (the learning rate after warmup and each step's draws do not depend on --steps, so a finished run
# continued to more steps trains as one that went there straight)
MAY_CHANGE_ON_RESUME = ("steps", "eval_every", "eval_problems")


def resume(args, cfg: RLConfig, ckpt_path: str, model, tokenizer, optimizer, device, log):
    """(step, validation history, step log) of a killed run, its weights and optimizer loaded.
    Refuses a run made with other settings than this command's, naming them. A finished run
    resumed with a larger --steps goes on to it."""
    if not os.path.exists(ckpt_path):
        raise ValueError(f"--resume: no checkpoint at {ckpt_path}; start the run without --resume "
                         f"(python train_rl.py --init {args.init})")
    _, _, state = M.load_checkpoint(ckpt_path, device, expect_config=model.config,
                                    expect_tokenizer=tokenizer.identity())
    had = state.get("rl_config", {})
    changed = [f"{k} {had.get(k)!r} (now {v!r})" for k, v in asdict(cfg).items()
               if k not in MAY_CHANGE_ON_RESUME and had.get(k) != v]
    changed += [f"--{k.replace('_', '-')} {state['args'].get(k)!r} (now {getattr(args, k)!r})"
                for k in ("algo", "seed", "same_prompts") if state["args"].get(k) != getattr(args, k)]
    if changed:
        raise ValueError(f"--resume: {ckpt_path} was trained with other settings: {'; '.join(changed)}. Resume "
                         f"with its settings (only --steps, --eval-every and --eval-problems may change), or pass another --out")
    if state["step"] > cfg.steps:
        raise ValueError(f"--resume: {ckpt_path} has done {state['step']} steps, more than --steps {cfg.steps}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log(f"resumed {ckpt_path} at step {state['step']}")
    return state["step"], state["history"], state["steps_log"]


def finish(run_dir: str, args, cfg: RLConfig, run: dict, history, steps_log, wall: float, ckpt_path: str, log):
    """run.json, and the line that says how RL moved greedy accuracy on the same problems."""
    results = {"args": vars(args), "rl_config": asdict(cfg), "init": args.init, "beta": run["beta"],
               "history": history, "steps": steps_log, "wall_seconds": wall}
    countdown.write_atomically(os.path.join(run_dir, "run.json"), [json.dumps(results, indent=2) + "\n"])
    first, final = history[0], history[-1]
    low, high = final["accuracy_95ci"]
    change = paired_change(first["correct"], final["correct"])  # both checks decode every val problem
    log(f"done: greedy accuracy {first['accuracy']:.1%} -> {final['accuracy']:.1%} "
        f"[{low:.1%}, {high:.1%}] on {final['rollouts']} problems (+{change['gained']}/-{change['lost']}, "
        f"McNemar p={change['p']:.2g}), children {first['children']:.2f} -> {final['children']:.2f}; "
        f"{wall / 60:.1f} min in all; checkpoint {ckpt_path}")


if __name__ == "__main__":
    raise SystemExit(main())
