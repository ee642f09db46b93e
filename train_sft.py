"""
Supervised training from scratch on the solvers' demonstrations: SoS+ (serial) or APR (parallel).

    python train_sft.py --mode apr --preset tiny            # generates its data on first use
    python train_sft.py --mode sosp --preset tiny --resume  # continue a killed run
    torchrun --nproc_per_node=2 train_sft.py --mode apr --preset small   # several GPUs (or CPU, gloo)

What it does, in order:
1. Data: problems (`countdown.py`) and demonstrations (`search.py`) for the preset's task, made
   once and cached under `data/<task>/` (the tiny preset fixes or bounds the solver's beams,
   parents' and children's: see `search_config`).
2. Sequences: every LM call of a demonstration is one sequence (SoS+: one per problem; APR:
   every parent call and every child, `search.lm_calls`). The model is trained only on what it
   writes, EOS included; prompts, conditioning prefixes and join blocks are context. Sequences
   longer than the context are dropped and counted.
3. Batches: an optimizer step is a random sample of sequences (`epoch_steps`), so parents and
   children are mixed in every step as in the data; within a step, sequences of similar length
   share a micro-batch (`micro_batches`), so little compute goes to padding; the padding share
   is reported. The order is a pure function of (seed, epoch), which makes resuming exact.
4. Training: AdamW, linear warmup then cosine decay, gradient clipping, gradient accumulation;
   the training forward through torch.compile (`--no-compile` to skip the minute of compiling);
   validation loss and greedy accuracy (`evaluate.evaluate`, the strict verifier) at step 0,
   periodically and at the last step; atomic checkpoints with
   optimizer state, step and RNG; `--resume` continues a killed run to the same weights.
5. Several processes: under `torchrun` each rank takes its own share of every step's
   sequences and DistributedDataParallel averages gradients (nccl on GPUs, gloo on CPU).

Outputs: `out/<run>/ckpt.pt` (model.save_checkpoint) and `out/<run>/run.json` (arguments and
final metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist

import countdown
import model as M
import search
from evaluate import evaluate
from rollout import checkpoint_mode
from tokenizer import Tokenizer

# ---------------------------------------------------------------------------------------------
# Presets: the task, the data and the optimization, per model size


@dataclass(frozen=True)
class TrainConfig:
    task: countdown.GameConfig = countdown.GameConfig()  # the problems
    n_train: int = 500_000         # training problems
    n_val: int = 1000              # validation problems
    batch_tokens: int = 256 * 2048  # tokens of the sequences in one optimizer step, all ranks
    micro_tokens: int = 16384      # most tokens per forward pass (padding included); steps accumulate them
    steps: int = 19_000            # optimizer steps
    lr: float = 5e-5               # peak learning rate
    min_lr: float = 5e-7           # end of the cosine decay
    warmup: int = 500              # linear warmup steps
    weight_decay: float = 0.01
    beta2: float = 0.999
    clip: float = 1.0              # gradient norm clipping
    eval_every: int = 1000         # steps between validation checks
    val_sequences: int = 256       # sequences in the validation loss
    eval_problems: int = 200       # validation problems decoded greedily at each check (last step: all)
    beam_sosp: int | None = None   # a fixed solver beam for SoS+ demonstrations (None: the authors' range 1..5)
    beam_apr: int | None = None    # ... and for APR's (None: the authors' range 1..10)
    child_beam_apr: int | None = None  # a fixed beam for APR's children (None: the authors' parent beam..15)
    beam_max_sosp: int | None = None  # with a fixed beam: draw each problem's beam from beam..beam_max instead
    beam_max_apr: int | None = None   #   (APR: the number of children becomes the model's choice, which RL can move)
    join_repeat: int = 1           # APR: times each parent call after a join appears per epoch (see training_sequences)


SFT_PRESETS = {
    # the paper: 500k problems, batch 256 sequences (about 256 x 2k tokens), 19k steps
    "paper": TrainConfig(),
    # one GPU: SFT about 27 min per mode at the rate measured on an H200 (docs/experiments.md, "A GPU check")
    "small": TrainConfig(n_train=200_000, batch_tokens=128 * 1024, micro_tokens=32768, steps=4000,
                         lr=3e-4, min_lr=3e-5, warmup=200, beta2=0.95, eval_every=500),
    # a 2-core CPU, about half an hour per method: 4 numbers in 1..10, target 10..30, a 768-token
    # window per thread for both methods (the model preset); SoS+ at beam 2, the best serial
    # solver within it; APR's beam drawn per problem from 2..4 with children at beam 4, so the
    # model chooses how many children to spawn; 2,500 steps. docs/experiments.md: "The 4-number
    # task and its window", "Drawn beams" and "Training longer: 2,500 steps".
    "tiny": TrainConfig(task=countdown.GameConfig(count=4, num_min=1, num_max=10, target_min=10, target_max=30),
                        n_train=20_000, n_val=500, batch_tokens=8192, micro_tokens=2048, steps=2500,
                        lr=3e-3, min_lr=3e-4, warmup=50, beta2=0.95, eval_every=250, val_sequences=128,
                        eval_problems=20, beam_sosp=2, beam_apr=2, beam_max_apr=4, child_beam_apr=4, join_repeat=2),
}


# ---------------------------------------------------------------------------------------------
# Data

def demo_beam(cfg: TrainConfig, mode: str) -> int | None:
    """The fixed solver beam of a mode's demonstrations in a config (None: the authors' ranges)."""
    return cfg.beam_apr if mode == "apr" else cfg.beam_sosp


def demo_beam_max(cfg: TrainConfig, mode: str) -> int | None:
    """The top of a drawn beam range beam..beam_max (None: the beam is fixed, or the authors')."""
    return cfg.beam_max_apr if mode == "apr" else cfg.beam_max_sosp


def demo_child_beam(cfg: TrainConfig, mode: str) -> int | None:
    """The fixed beam of APR's children (None: drawn from the parent's beam..15, the authors')."""
    return cfg.child_beam_apr if mode == "apr" else None


def search_config(mode: str, beam: int | None, child_beam: int | None = None,
                  beam_max: int | None = None) -> search.SearchConfig:
    """The solver settings of a run's demonstrations: the authors' defaults, a fixed beam, or a
    small range of beams.

    A fixed beam is the tiny preset's choice for SoS+. With the authors' random beam (APR:
    1..10 per problem) nothing in an APR parent's text says how many successors it will list
    before it spawns, so a greedy model cannot know when to stop; small models loop there. A fixed beam
    makes the stop countable. It is also how each method is given its best search for a context
    window: a larger beam solves more problems but writes longer text, and a thread that outgrows
    the window fails.

    A range beam..beam_max, drawn per problem, is tiny's choice for APR (2..4): a parent's text
    still does not say how many children it will spawn, but the choice is bounded, so the model
    learns a spread of spawn counts that RL can shift (the paper's RL raised it from 6.1 to 8.2)."""
    config = search.DEFAULTS[mode]
    if child_beam:
        config = replace(config, child_beam_min=child_beam, child_beam_max=child_beam)
    return replace(config, beam_min=beam, beam_max=max(beam, beam_max or beam)) if beam else config


def prepare_data(task: countdown.GameConfig, mode: str, n_train: int, n_val: int, data_dir: str = "data",
                 seed: int = 0, workers: int = 1, log=print, beam: int | None = None,
                 child_beam: int | None = None, beam_max: int | None = None) -> dict:
    """Problems and demonstrations of a task, generated on first use and cached on disk."""
    paths = {split: countdown.problems_file(task, split, n, data_dir, seed, workers, log)
             for split, n in (("train", n_train), ("val", n_val))}
    for split in ("train", "val"):
        beams = f"{beam}-{beam_max}" if beam and beam_max and beam_max > beam else beam
        demos = paths[split].replace(".jsonl", f"_{mode}" + (f"_beam{beams}" if beam else "")
                                     + (f"_child{child_beam}" if child_beam else "") + ".jsonl")
        if not os.path.exists(demos):
            log(f"writing {mode} demonstrations -> {demos}")
            problems = countdown.read_problems(paths[split])
            records = search.demonstrate_all(problems, mode, seed=seed, config=search_config(mode, beam, child_beam, beam_max),
                                             workers=workers, as_json=True)
            countdown.write_atomically(demos, (line for line, _ in records))
        paths[f"{split}_{mode}"] = demos
    return paths


def read_demonstrations(path: str, mode: str) -> list[dict]:
    records = []
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("mode") != mode:
                raise ValueError(f"{path} holds {record.get('mode')} demonstrations, not {mode}; "
                                 f"delete it or pass --mode {record.get('mode')}")
            records.append(record)
    return records


def budget_of(record: dict, mode: str, tokenizer: Tokenizer, context: int, step: int = 512) -> int:
    """The conditioning value of a demonstration: SoS+, its length in tokens
    rounded up to a multiple of `step` and capped at the context; APR, its number of children."""
    if mode == "apr":
        return sum(search.spawn_sizes(record["trace_dict"]))
    tokens = len(tokenizer.encode(record["search_path"])) + 2
    return min(context, step * math.ceil(tokens / step))


def has_budget_prefix(k: int, share: float) -> bool:
    """Whether demonstration k gets a conditioning prefix when a `share` of them do: spread evenly,
    so that every run of demonstrations holds the share and no random draw is involved."""
    return math.floor((k + 1) * share) > math.floor(k * share)


def training_sequences(records: list[dict], mode: str, tokenizer: Tokenizer, context: int,
                       conditioning: float = 0.0, join_repeat: int = 1):
    """Token ids and loss masks of every LM call, and how many were too long for the context.

    A `conditioning` share of the demonstrations (0: none, 1: all) starts with its budget as a
    prefix; with a share between, one model learns to follow a budget and to choose on its own.

    With `join_repeat` > 1 every APR parent call that continues after a join is listed that many
    times. Those calls are where a parent copies the winning child's path into its answer, a
    long-range copy that small models learn last; a parent writes one such call per spawn
    against several children, so repeating it shifts each step's tokens toward the copy without
    adding steps (docs/experiments.md, "Join-repeat, measured alone")."""
    sequences, dropped = [], 0
    for k, record in enumerate(records):
        trace = search.record_trace(record)
        prefix = search.condition_prefix(mode, budget_of(record, mode, tokenizer, context)) \
            if has_budget_prefix(k, conditioning) else ""
        root_calls = len(trace["main_calls"])  # lm_calls yields the root's calls first
        for c, (segments, ends_thread) in enumerate(search.lm_calls(trace, prefix)):
            ids, mask = tokenizer.render(segments, eos=ends_thread)
            if len(ids) > context:
                dropped += 1
                continue
            after_join = 0 < c < root_calls
            sequences.extend([(ids, mask)] * (join_repeat if after_join else 1))
    return sequences, dropped


def micro_batches(indices: list[int], lengths: list[int], micro_tokens: int) -> list[list[int]]:
    """Cut sequences, sorted by length, into micro-batches of at most `micro_tokens` computed
    tokens (rows x longest row), so that rows of one micro-batch need little padding."""
    batches, batch, longest = [], [], 0
    for i in sorted(indices, key=lambda i: lengths[i]):
        longest_if_added = max(longest, lengths[i])
        if batch and longest_if_added * (len(batch) + 1) > micro_tokens:
            batches.append(batch)
            batch, longest_if_added = [], lengths[i]
        batch.append(i)
        longest = longest_if_added
    return batches + [batch] if batch else batches


def epoch_steps(lengths: list[int], batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """The optimizer steps of one epoch, each a list of sequence indices: the shuffled sequences
    cut into consecutive runs of about `batch_tokens` tokens. A step is thus a random sample of
    the data, with parent calls and children mixed as they are in the whole set; drawing whole
    micro-batches of similar lengths instead would give some steps only children and others only
    parents' second calls, and on APR data that made the loss swing from step to step and stay
    high (docs/experiments.md, "Mixed steps"). A pure function of (seed, epoch), so a resumed run
    sees the same steps."""
    rng = random.Random(f"sft:{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    steps, step, tokens = [], [], 0
    for i in order:
        step.append(i)
        tokens += lengths[i]
        if tokens >= batch_tokens:
            steps.append(step)
            step, tokens = [], 0
    return steps + [step] if step else steps


def collate(sequences, batch: list[int], pad_id: int, device):
    """(idx, targets) tensors of a micro-batch: inputs are ids[:-1], targets ids[1:] where the mask
    says the model writes that token, else -1 (padding too)."""
    width = max(len(sequences[i][0]) for i in batch) - 1
    idx = torch.full((len(batch), width), pad_id, dtype=torch.long)
    targets = torch.full((len(batch), width), -1, dtype=torch.long)
    for row, i in enumerate(batch):
        ids, mask = sequences[i]
        n = len(ids) - 1
        idx[row, :n] = torch.tensor(ids[:-1])
        targets[row, :n] = torch.tensor([t if m else -1 for t, m in zip(ids[1:], mask[1:])])
    return idx.to(device), targets.to(device)


class BatchStream:
    """Endless optimizer steps (lists of sequence indices), addressed by a position (epoch,
    index) that a checkpoint stores."""

    def __init__(self, sequences, batch_tokens: int, seed: int, position=(0, 0)):
        self.sequences, self.batch_tokens, self.seed = sequences, batch_tokens, seed
        self.lengths = [len(ids) - 1 for ids, _ in sequences]
        self.targets = [sum(mask[1:]) for _, mask in sequences]  # trained tokens per sequence
        self.epoch, self.index = position
        self.steps = epoch_steps(self.lengths, batch_tokens, seed, self.epoch)

    @property
    def position(self):
        return (self.epoch, self.index)

    def next(self) -> list[int]:
        if self.index == len(self.steps):
            self.epoch, self.index = self.epoch + 1, 0
            self.steps = epoch_steps(self.lengths, self.batch_tokens, self.seed, self.epoch)
        step = self.steps[self.index]
        self.index += 1
        return step


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.min_lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------------------------------------
# Training

def validation_loss(model, sequences, pad_id, device, micro_tokens) -> float:
    """Mean loss per trained token over a fixed list of sequences."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        lengths = [len(s[0]) - 1 for s in sequences]
        for batch in micro_batches(range(len(sequences)), lengths, micro_tokens):
            idx, targets = collate(sequences, batch, pad_id, device)
            with M.autocast(device):
                logprobs = model(idx, targets, reduction="none")
            total -= float(logprobs.sum())
            count += int((targets != -1).sum())
    model.train()
    return total / max(1, count)


def describe(metrics: dict) -> str:
    line = f"step {metrics['step']} | val loss {metrics['val_loss']:.4f}"
    if "greedy_accuracy" in metrics:
        low, high = metrics["greedy_accuracy_95ci"]
        line += (f" | greedy accuracy {metrics['greedy_accuracy']:.1%} [{low:.1%}, {high:.1%}] on "
                 f"{metrics['greedy_problems']} problems | children {metrics['greedy_children']:.1f}")
    if "eval_seconds" in metrics:
        line += f" | {metrics['eval_seconds']:.0f} s"
    return line


def maybe_compile(module, device, wanted: bool, log=print):
    """The training forward, through torch.compile when asked and possible: it fuses the
    elementwise work (norms, rotary, SwiGLU) around the matmuls, for `bench.py --part sft`'s
    speed-up after a minute or so of compiling. On a CPU it needs a C++ compiler; without one the
    run goes on eagerly. Evaluation always runs the plain model."""
    if not wanted:
        return module
    if not can_compile(device):
        log("no C++ compiler found: training without torch.compile")
        return module
    return torch.compile(module, dynamic=True)


def can_compile(device) -> bool:
    """torch.compile's CPU backend writes C++: it needs a compiler on the PATH."""
    return device.type != "cpu" or any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def setup_distributed(device_arg):
    """(rank, world size, device); initializes the process group when started by torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, M.pick_device(device_arg)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    device = M.pick_device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def teardown_distributed(world):
    """Leave the process group together: a rank that tears gloo down while rank 0 still writes its
    results can abort ("terminate called without an active exception"), so all wait for all first."""
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a SoS+ or APR model from scratch on demonstrations.")
    # what to train
    parser.add_argument("--mode", required=True, help="sosp (serial) or apr (parallel)")
    parser.add_argument("--preset", default="tiny", help="tiny (CPU), small (one GPU) or paper")
    parser.add_argument("--out", default=None, help="run folder (default out/sft_<mode>_<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument("--conditioning", type=float, nargs="?", const=1.0, default=0.0, metavar="SHARE",
                        help="prefix prompts with a budget (SoS+ tokens, APR children) to sweep compute later; "
                             "alone: every demonstration, with a share such as 0.5: that share of them, so the "
                             "model also runs without a budget")
    # overrides of the preset
    parser.add_argument("--steps", type=int, help="optimizer steps")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--batch-tokens", type=int, help="tokens per optimizer step, all ranks")
    parser.add_argument("--micro-tokens", type=int, help="tokens per forward pass")
    parser.add_argument("--n-train", type=int, help="training problems")
    parser.add_argument("--n-val", type=int, help="validation problems")
    parser.add_argument("--eval-every", type=int, help="steps between validation checks")
    parser.add_argument("--eval-problems", type=int, help="problems decoded greedily at each check, all val problems at the last (0: none)")
    parser.add_argument("--beam", type=int, help="fixed solver beam of the demonstrations (0: the authors' random beams)")
    parser.add_argument("--beam-max", type=int, help="draw each demonstration's beam from --beam..BEAM_MAX (APR: a spread "
                        "of spawn counts for the model to choose from)")
    parser.add_argument("--child-beam", type=int, help="APR: fixed beam of the children's searches (0: the authors' parent beam..15)")
    parser.add_argument("--join-repeat", type=int, help="APR: copies of each parent call after a join per epoch")
    parser.add_argument("--n-layer", type=int, help="model depth (default: the preset's)")
    parser.add_argument("--n-embd", type=int, help="model width (default: the preset's)")
    parser.add_argument("--context", type=int, help="model context in tokens (default: the preset's)")
    parser.add_argument("--numbers", choices=["whole", "digits"], default="whole", help="tokenizer number handling")
    parser.add_argument("--count", type=int, help="task: numbers per problem (default: the preset's)")
    parser.add_argument("--num-max", type=int, help="task: largest input number")
    parser.add_argument("--target-min", type=int, help="task: smallest target")
    parser.add_argument("--target-max", type=int, help="task: largest target")
    # where and how
    parser.add_argument("--data-dir", default="data", help="cache of problems and demonstrations")
    parser.add_argument("--workers", type=int, default=2, help="processes for data generation")
    parser.add_argument("--seed", type=int, default=0, help="the problems, data order and initialization")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="only initialization and data order (default: --seed): the same problems, another run")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--quiet", action="store_true", help="no per-step log lines")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the training step (default on; --no-compile for quick runs)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return train(args)
    except ValueError as error:
        print(f"train_sft.py: error: {error}", file=sys.stderr)
        return 2


def train_config(args) -> TrainConfig:
    """The preset with the command line's overrides: what the run trains on and how."""
    if args.mode not in ("sosp", "apr"):
        raise ValueError(f"unknown --mode {args.mode!r}; use --mode sosp or --mode apr")
    if args.preset not in SFT_PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}; use one of {', '.join(SFT_PRESETS)}")
    overrides = {k: getattr(args, k) for k in ("steps", "lr", "batch_tokens", "micro_tokens", "n_train", "n_val",
                                                "eval_every", "eval_problems", "join_repeat") if getattr(args, k) is not None}
    if args.beam is not None:  # --beam 0: the authors' random beams; --beam B alone: fixed at B
        overrides[f"beam_{args.mode}"] = args.beam or None
        overrides[f"beam_max_{args.mode}"] = None
    if args.beam_max is not None:
        beam = overrides.get(f"beam_{args.mode}", getattr(SFT_PRESETS[args.preset], f"beam_{args.mode}"))
        if not beam or args.beam_max < beam:
            raise ValueError(f"--beam-max {args.beam_max} needs a fixed --beam at or below it (got {beam or 'none'})")
        overrides[f"beam_max_{args.mode}"] = args.beam_max
    if args.child_beam is not None:
        if args.mode != "apr":
            raise ValueError("--child-beam sets the beam of APR's children; SoS+ has none")
        overrides["child_beam_apr"] = args.child_beam or None
    cfg = replace(SFT_PRESETS[args.preset], **overrides)
    for name in ("steps", "batch_tokens", "micro_tokens", "n_train", "n_val", "eval_every", "join_repeat"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(cfg, name)})")
    if cfg.eval_problems < 0:
        raise ValueError(f"--eval-problems must be 0 (no greedy checks) or more (got {cfg.eval_problems})")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"--lr must be a finite positive number (got {cfg.lr})")
    if not 0 <= args.conditioning <= 1:
        raise ValueError(f"--conditioning is the share of demonstrations with a budget, 0..1 (got {args.conditioning})")
    task = {k: getattr(args, k) for k in ("count", "num_max", "target_min", "target_max") if getattr(args, k) is not None}
    if task:
        cfg = replace(cfg, task=replace(cfg.task, **task))
        cfg.task.validate()
    return cfg


def model_config(args, tokenizer: Tokenizer) -> M.GPTConfig:
    """The preset's model with the command line's overrides."""
    overrides = {k: v for k, v in (("n_layer", args.n_layer), ("n_embd", args.n_embd),
                                   ("context", args.context)) if v is not None}
    for name, value in overrides.items():
        if not 1 <= value <= M.CONFIG_LIMITS[name]:
            raise ValueError(f"--{name.replace('_', '-')} must be in 1..{M.CONFIG_LIMITS[name]} (got {value})")
    return M.preset(args.preset, vocab_size=tokenizer.vocab_size, **overrides)


def recorded_config(args) -> dict:
    """What fixes a run's result, as its run.json records it: `pipeline.py` compares
    this with a finished run before letting the run stand in for a stage."""
    return {"train_config": asdict(train_config(args)), "model_config": asdict(model_config(args, Tokenizer(args.numbers)))}


def load_sequences(args, cfg: TrainConfig, tokenizer: Tokenizer, context: int, master: bool, world: int, log):
    """The run's data: (training sequences, validation sequences, validation problems, how many
    training sequences were too long). Rank 0 generates what is missing; the others wait for it."""
    demos = dict(beam=demo_beam(cfg, args.mode), child_beam=demo_child_beam(cfg, args.mode),
                 beam_max=demo_beam_max(cfg, args.mode))
    if master:
        paths = prepare_data(cfg.task, args.mode, cfg.n_train, cfg.n_val, args.data_dir, args.seed, args.workers, log,
                             **demos)
    if world > 1:
        dist.barrier()
    if not master:
        paths = prepare_data(cfg.task, args.mode, cfg.n_train, cfg.n_val, args.data_dir, args.seed, 1, log, **demos)
    train_seqs, dropped = training_sequences(read_demonstrations(paths[f"train_{args.mode}"], args.mode),
                                             args.mode, tokenizer, context, args.conditioning, cfg.join_repeat)
    val_seqs, _ = training_sequences(read_demonstrations(paths[f"val_{args.mode}"], args.mode),
                                     args.mode, tokenizer, context, args.conditioning)
    if not train_seqs:
        raise ValueError("no training sequence fits the context; raise --context")
    log(f"{len(train_seqs):,} training sequences ({dropped:,} longer than {context} tokens dropped), "
        f"{sum(len(s[0]) for s in train_seqs) / len(train_seqs):.0f} tokens on average")
    return train_seqs, val_seqs[:cfg.val_sequences], countdown.read_problems(paths["val"]), dropped


def make_optimizer(model, cfg: TrainConfig):
    """AdamW with weight decay on matrices only (not on norms' gains)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, cfg.beta2))


def train_step(forward, stream: "BatchStream", chosen: list[int], micro_tokens: int, pad_id: int, device,
               rank: int = 0, world: int = 1, ddp_model=None) -> dict:
    """Forward and backward passes of one optimizer step's sequences, `chosen` from `stream` (the
    caller steps the optimizer). Each rank takes every world-th sequence by length and cuts its share into
    micro-batches; the loss is the sum of token losses over all targets of the step on all ranks,
    so it is the step's mean whatever the split (DDP averages gradients, hence the factor world).
    Returns the step's loss and its real and computed (padding included) tokens on this rank."""
    sequences, lengths = stream.sequences, stream.lengths
    by_length = sorted(chosen, key=lambda i: lengths[i])
    mine = micro_batches(by_length[rank::world], lengths, micro_tokens)
    n_targets = sum(stream.targets[i] for i in chosen)
    totals = {"loss": 0.0, "real": 0, "computed": 0}
    for k, batch in enumerate(mine):
        idx, targets = collate(sequences, batch, pad_id, device)
        local = world > 1 and k < len(mine) - 1  # gradients stay local until the last micro-batch
        with (ddp_model.no_sync() if local else contextlib.nullcontext()), M.autocast(device):
            loss = -forward(idx, targets, reduction="none").sum() * world / n_targets
        loss.backward()
        totals["loss"] += float(loss.detach()) / world
        totals["real"] += sum(lengths[i] for i in batch)
        totals["computed"] += idx.numel()
    return totals


def check(model, tokenizer: Tokenizer, cfg: TrainConfig, step: int, data: dict, mode: str, device,
          final: bool, master: bool) -> dict:
    """Validation loss, and greedy accuracy with the strict verifier (all val problems at the end)."""
    began = time.time()
    metrics = {"step": step, "val_loss": validation_loss(model, data["val"], tokenizer.pad_id, device, cfg.micro_tokens)}
    n = (len(data["val_problems"]) if final else cfg.eval_problems) if cfg.eval_problems else 0
    if n and master:
        rollouts = evaluate(model, tokenizer, data["val_problems"][:n], parallel=mode == "apr")
        model.train()
        metrics.update({f"greedy_{k}": v for k, v in rollouts.items()})
    metrics["eval_seconds"] = time.time() - began
    return metrics


def build(args, cfg: TrainConfig, config: M.GPTConfig, tokenizer: Tokenizer, train_seqs, ckpt_path: str, device, log):
    """(model, optimizer, batch stream, history, step): initialized from the train seed, or
    where a killed run left them with --resume."""
    train_seed = args.seed if args.train_seed is None else args.train_seed
    torch.manual_seed(train_seed)
    model = M.GPT(config).to(device)
    optimizer = make_optimizer(model, cfg)
    run = {"step": 0, "position": (0, 0), "history": []}
    if args.resume:
        run = resume(args, cfg, ckpt_path, model, optimizer, config, tokenizer, device)
        log(f"resumed {ckpt_path} at step {run['step']}")
    stream = BatchStream(train_seqs, cfg.batch_tokens, train_seed, run["position"])
    return model, optimizer, stream, run["history"], run["step"]


# what a resumed run may change: they decide what is checked and how often, not the weights
MAY_CHANGE_ON_RESUME = ("eval_every", "eval_problems")


def changed_settings(state: dict, args, cfg: TrainConfig) -> list[str]:
    """The settings that decide the weights and differ between a checkpoint's run and this command."""
    had, now = state.get("train_config", {}), json.loads(json.dumps(asdict(cfg)))
    changed = [f"{k} {had.get(k)!r} (now {v!r})" for k, v in now.items()
               if k not in MAY_CHANGE_ON_RESUME and had.get(k) != v]
    return changed + [f"--{k.replace('_', '-')} {state['args'].get(k)!r} (now {getattr(args, k)!r})"
                      for k in ("seed", "train_seed", "conditioning") if state["args"].get(k) != getattr(args, k)]


def resume(args, cfg: TrainConfig, ckpt_path: str, model, optimizer, config: M.GPTConfig, tokenizer: Tokenizer,
           device) -> dict:
    """Load a killed run's weights, optimizer and RNG state; returns its step, data position and
    history. Refuses a run made with other settings than this command's, naming them."""
    _, _, state = M.load_checkpoint(ckpt_path, device, expect_config=config, expect_tokenizer=tokenizer.identity())
    if checkpoint_mode(state, ckpt_path) != args.mode:
        raise ValueError(f"{ckpt_path} is a {state['args']['mode']} run, not {args.mode}")
    changed = changed_settings(state, args, cfg)
    if changed:
        raise ValueError(f"--resume: {ckpt_path} was trained with other settings: {'; '.join(changed)}. Resume "
                         f"with its settings (only --eval-every and --eval-problems may change), or pass another --out")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return {"step": state["step"], "position": tuple(state["position"]), "history": state["history"]}


def train(args) -> int:
    run_began = time.time()  # wall time counts data preparation too
    cfg = train_config(args)
    run_dir = args.out or os.path.join("out", f"sft_{args.mode}_{args.preset}")
    ckpt_path = os.path.join(run_dir, "ckpt.pt")
    if args.resume and not os.path.exists(ckpt_path):
        raise ValueError(f"--resume: no checkpoint at {ckpt_path}; start the run without --resume "
                         f"(python train_sft.py --mode {args.mode} --preset {args.preset})")
    rank, world, device = setup_distributed(args.device)
    master = rank == 0
    # flushed lines: a log redirected to a file (nohup ... > out/run.log) shows progress as it happens
    log = functools.partial(print, flush=True) if master else (lambda *a, **k: None)
    tokenizer = Tokenizer(args.numbers)
    config = model_config(args, tokenizer)
    countdown.ensure_folder(run_dir)
    train_seqs, val_seqs, val_problems, dropped = load_sequences(args, cfg, tokenizer, config.context, master, world, log)
    data = {"val": val_seqs, "val_problems": val_problems}
    model, optimizer, stream, history, step = build(args, cfg, config, tokenizer, train_seqs, ckpt_path, device, log)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = maybe_compile(ddp_model, device, args.compile, log)

    def save():
        if master:
            M.save_checkpoint(ckpt_path, model, tokenizer, args=vars(args), stage="sft", step=step,
                              position=list(stream.position), history=history, optimizer=optimizer.state_dict(),
                              rng=torch.get_rng_state(), train_config=json.loads(json.dumps(asdict(cfg))))

    clock = {"started": time.time(), "first_step": step, "real": 0, "computed": 0, "checks": 0.0}
    if step == 0:
        history.append(check(model, tokenizer, cfg, step, data, args.mode, device, False, master))
        clock["checks"] += history[-1]["eval_seconds"]
        log(describe(history[-1]))
    while step < cfg.steps:
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # every rank advances the same stream and takes its share of the step
        done = train_step(forward, stream, stream.next(), cfg.micro_tokens, tokenizer.pad_id,
                          device, rank, world, ddp_model)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        clock["real"] += done["real"]
        clock["computed"] += done["computed"]
        loss = all_ranks_sum(done["loss"], world, device)
        if not args.quiet and master and (step % 10 == 0 or step == cfg.steps):
            log(progress_line(step, cfg.steps, loss, lr, float(norm), clock, world))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.append(check(model, tokenizer, cfg, step, data, args.mode, device, step == cfg.steps, master))
            clock["checks"] += history[-1]["eval_seconds"]
            log(describe(history[-1]))
            save()
    if master:
        save()
        write_results(run_dir, args, cfg, config, len(train_seqs), dropped, history, clock, run_began, log, ckpt_path)
    teardown_distributed(world)
    return 0


def all_ranks_sum(value: float, world: int, device) -> float:
    if world == 1:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor)
    return float(tensor)


def progress_line(step: int, steps: int, loss: float, lr: float, norm: float, clock: dict, world: int) -> str:
    """One log line: the step's loss, and the speed and time left, checks left out."""
    elapsed = time.time() - clock["started"] - clock["checks"]
    eta = elapsed / (step - clock["first_step"]) * (steps - step)
    return (f"step {step}/{steps} | loss {loss:.4f} | lr {lr:.2e} | grad norm {norm:.2f} | "
            f"{clock['computed'] * world / max(elapsed, 1e-9):,.0f} tok/s | ETA {eta / 60:.1f} min")


def write_results(run_dir, args, cfg, config, sequences: int, dropped: int, history, clock, run_began, log,
                  ckpt_path) -> None:
    """run.json: the arguments, the configs and every check; what `pipeline.py` compares a rerun against."""
    padding = 1 - clock["real"] / max(1, clock["computed"])
    results = {"args": vars(args), "train_config": asdict(cfg), "model_config": asdict(config),
               "sequences": sequences, "dropped": dropped, "history": history,
               "final_val_loss": history[-1]["val_loss"], "padding_share": padding,
               "wall_seconds": time.time() - run_began, "eval_seconds": clock["checks"]}
    countdown.write_atomically(os.path.join(run_dir, "run.json"), [json.dumps(results, indent=2, default=str)])
    log(f"done: {describe(history[-1])}; {padding:.1%} of computed tokens were padding; "
        f"{(time.time() - run_began) / 60:.1f} min in all; checkpoint {ckpt_path}")


if __name__ == "__main__":
    sys.exit(main())
