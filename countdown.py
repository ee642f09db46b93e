"""
The Countdown game: the rules, problem generation with reproducible splits, and the strict
verifier that decides whether a search trace solved its problem (and so the RL reward).

    python countdown.py --split train --n 500000 --seed 0 --out data/train.jsonl --workers 2
    python countdown.py --split val --n 1000 --seed 0 --out data/val.jsonl

A problem is a list of numbers and a target. A move takes two of the current numbers and
replaces them by `a+b`, `a*b`, larger minus smaller, or larger divided by smaller when the
division is exact. A solution uses every input exactly once and leaves exactly the target.

Three properties matter to everything built on top of this file:

- Reproducible: problem i of a split depends only on (seed, split, i) and the game parameters,
  never on the number of worker processes or on the order they finish in.
- Disjoint splits: train, val and test never share a (sorted numbers, target) pair, because the
  split a pair belongs to is a fixed hash of the pair (`split_of`), and each split only keeps
  pairs that hash to it. No split needs the others to exist first. Val and test problems are
  also unique within their split.
- A strict verifier: `extract_answer`, `check_solution` and `is_correct` replay the answer on a
  multiset of the inputs with exact integer arithmetic, and never evaluate model text as code.
  Numbers are read as the game writes them: ASCII digits, no leading zeros, at most 18 digits.
  Any string at all gets True or False, never an exception.

Standard library only: no torch, no numpy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import glob
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import sys
from collections import Counter, deque
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# The rules

def moves(a: int, b: int) -> list[tuple[int, str]]:
    """All results of combining the pair (a, b), in the game's order: +, *, -, /.

    `+` and `*` are written in pair order; `-` and `/` larger first, so results are never
    negative. Division only when exact and the divisor is not 0. Returns (result, "a+b=c").
    """
    return [(value, f"{x}{symbol}{y}={value}") for value, x, symbol, y in move_parts(a, b)]


def move_parts(a: int, b: int) -> list[tuple[int, int, str, int]]:
    """The rule itself, as (result, left operand, symbol, right operand) in the written order.

    The solvers score every move but write out only a few, so they build a move's text late.
    """
    big, small = (a, b) if a >= b else (b, a)
    out = [(a + b, a, "+", b), (a * b, a, "*", b), (big - small, big, "-", small)]
    if small != 0 and big % small == 0:
        out.append((big // small, big, "/", small))
    return out


def _results(a: int, b: int):
    """The values of `moves(a, b)` without their text: the solver's inner loop needs only these."""
    return [value for value, _, _, _ in move_parts(a, b)]


def solve(nums: list[int], target: int) -> list[str] | None:
    """Exhaustive depth-first search; the first solution's operations, or None if unsolvable.

    Used to keep only solvable problems and to store one reference solution with each. A move's
    text names values, not positions, so a solution of the sorted numbers solves any order of
    them: results are cached by (sorted numbers, target), which makes small ranges with few
    distinct problems (and hopeless parameters) cheap.
    """
    return _solve_sorted(tuple(sorted(nums)), target)


@functools.lru_cache(maxsize=1 << 16)
def _solve_sorted(nums: tuple, target: int) -> list[str] | None:
    if not is_solvable(nums, target):
        return None
    return _search_solution(list(nums), target)


def is_solvable(nums, target: int) -> bool:
    """Whether any sequence of moves turns nums into exactly [target].

    Most random problems are unsolvable (about 6 of 7 with the paper's ranges), so this is the
    cost of generating problems. Instead of searching move sequences, it computes the set of
    values each proper subset of the numbers can become (bit masks index the subsets), then
    asks, for each way to split all the numbers in two, whether some value a of one side has
    a partner b on the other side with a move of (a, b) equal to the target. Solving the last
    move backwards (b = T - a, T / a, a + T, a - T, a / T, a * T) replaces a loop with lookups.
    """
    n = len(nums)
    full = (1 << n) - 1
    values = {1 << i: {x} for i, x in enumerate(nums)}
    for mask in sorted(range(1, full), key=lambda m: bin(m).count("1")):
        if mask in values:
            continue
        out = set()
        sub = (mask - 1) & mask
        while sub:
            rest = mask ^ sub
            if sub < rest:  # each unordered split once
                for a in values[sub]:
                    for b in values[rest]:
                        out.update(_results(a, b))
            sub = (sub - 1) & mask
        values[mask] = out
    sub = (full - 1) & full
    while sub:
        rest = full ^ sub
        if sub < rest:
            side_a, side_b = values[sub], values[rest]
            if len(side_a) > len(side_b):
                side_a, side_b = side_b, side_a
            for a in side_a:
                if target - a in side_b or a + target in side_b or a - target in side_b:
                    return True  # a + b, b - a, a - b
                if a == 0:
                    continue  # 0 * b is 0, and 0 can neither divide nor be divided to reach T >= 2
                if target % a == 0 and target // a in side_b:
                    return True  # a * b
                if a * target in side_b or (a % target == 0 and a // target in side_b):
                    return True  # b / a, a / b
        sub = (sub - 1) & full
    return False


def _search_solution(nums: list[int], target: int) -> list[str] | None:
    n = len(nums)
    if n == 1:
        return [] if nums[0] == target else None
    if n == 2:  # the last move: test the four results directly, no recursion
        for value, op in moves(nums[0], nums[1]):
            if value == target:
                return [op]
        return None
    for i, j in itertools.combinations(range(n), 2):
        rest = [nums[k] for k in range(n) if k != i and k != j]
        for value in _results(nums[i], nums[j]):
            path = _search_solution(rest + [value], target)
            if path is not None:
                op = next(op for v, op in moves(nums[i], nums[j]) if v == value)
                return [op] + path
    return None


# ---------------------------------------------------------------------------------------------
# Problems and splits

SPLITS = ("train", "val", "test")
# A (sorted numbers, target) pair belongs to val if its hash bucket (of 1000) is below 50, to
# test if below 100, else to train: 5% of pairs are held out for each evaluation split. Small
# task presets have few distinct pairs, so the held-out share must leave enough for 1,000
# unique val problems while costing train only a cheap redraw in 1 of 10 draws.
_SPLIT_BUCKETS = {"val": range(0, 50), "test": range(50, 100), "train": range(100, 1000)}
MAX_DRAWS = 100_000  # draws of one problem's numbers before the parameters are called impossible
# In a small task, a target may own no solvable pair in a 5% split at all, so after this many
# draws the target is drawn again. With the paper's ranges a val draw succeeds 1 time in ~140,
# so this never happens there and targets stay uniform.
DRAWS_PER_TARGET = 5_000
MAX_REPEATS = 2_000  # val/test: repeated problems in a row before the split is called exhausted


def split_of(nums: list[int], target: int) -> str:
    """The split that owns this (numbers, target) pair; stable across machines and runs."""
    key = f"{sorted(nums)}:{target}".encode()
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % 1000
    return next(name for name, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


# What a problem may be, wherever problems come from (a file, the command line): small enough to
# search. A 6-number search writes up to tens of MB of text per problem (docs/experiments.md, "A
# fork that copied too much, and inputs that make no sense"); the heuristic keeps a table as
# long as the target.
MAX_NUMBERS = 5
MAX_VALUE = 10_000


def problem_error(nums, target) -> str | None:
    """Why (nums, target) is not a problem this project can search, or None if it is one:
    2..MAX_NUMBERS integers in 0..MAX_VALUE and an integer target in 2..MAX_VALUE (booleans are
    not numbers here)."""
    def integer(x):
        return isinstance(x, int) and not isinstance(x, bool)
    if not isinstance(nums, list) or not 2 <= len(nums) <= MAX_NUMBERS:
        return f"a problem has 2 to {MAX_NUMBERS} numbers"
    if not all(integer(x) and 0 <= x <= MAX_VALUE for x in nums):
        return f"its numbers must be integers in 0..{MAX_VALUE}"
    if not integer(target) or not 2 <= target <= MAX_VALUE:
        return f"its target must be an integer in 2..{MAX_VALUE}"
    return None


@dataclass(frozen=True)
class GameConfig:
    """What a problem looks like. The defaults are the paper's task."""
    count: int = 4          # how many input numbers
    num_min: int = 1        # each input uniform in num_min..num_max
    num_max: int = 99
    target_min: int = 10    # target uniform in target_min..target_max, drawn first
    target_max: int = 100

    @property
    def name(self) -> str:
        """A folder name for this task's data, e.g. `c3_n1-20_t10-40`."""
        return f"c{self.count}_n{self.num_min}-{self.num_max}_t{self.target_min}-{self.target_max}"

    def validate(self) -> None:
        """Raise ValueError naming the first impossible parameter."""
        if not 2 <= self.count <= MAX_NUMBERS:
            raise ValueError(f"--count must be in 2..{MAX_NUMBERS} (got {self.count})")
        if not 1 <= self.num_min <= self.num_max <= MAX_VALUE:
            raise ValueError(f"need 1 <= --num-min <= --num-max <= {MAX_VALUE} "
                             f"(got {self.num_min}..{self.num_max})")
        if not 2 <= self.target_min <= self.target_max <= MAX_VALUE:
            raise ValueError(f"need 2 <= --target-min <= --target-max <= {MAX_VALUE} "
                             f"(got {self.target_min}..{self.target_max})")
        # No expression exceeds the product of max(x, 2) over its inputs (a+b <= a*b once both
        # are at least 2), so a target above that bound can never be reached.
        if max(self.num_max, 2) ** self.count < self.target_min:
            raise ValueError(f"{self.count} numbers up to {self.num_max} can never reach a target "
                             f"of {self.target_min} or more; raise --num-max or --count")


def generate_problem(index: int, seed: int, split: str, game: GameConfig) -> dict:
    """Problem `index` of `split`: its randomness comes from (seed, split, index) alone.

    The target is drawn first, then the numbers are redrawn until the pair belongs to this
    split and is solvable (the target too, after DRAWS_PER_TARGET misses). Raises ValueError
    when MAX_DRAWS draws find nothing.
    """
    rng = random.Random(f"countdown:{seed}:{split}:{index}")  # str seeds hash with sha512
    for draw in range(MAX_DRAWS):
        if draw % DRAWS_PER_TARGET == 0:
            target = rng.randint(game.target_min, game.target_max)
        nums = [rng.randint(game.num_min, game.num_max) for _ in range(game.count)]
        if split_of(nums, target) != split:
            continue
        solution = solve(nums, target)
        if solution is not None:
            return {"nums": nums, "target": target, "solution": solution}
    raise ValueError(
        f"no solvable {split} problem in {MAX_DRAWS:,} draws: {game.count} numbers in "
        f"{game.num_min}..{game.num_max} rarely or never reach a target in "
        f"{game.target_min}..{game.target_max}; widen the ranges")


def worker_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """Forked workers that die on SIGTERM whatever handler the parent had set: a worker that
    inherited one exiting through Python (`pipeline.py`'s) could survive being terminated."""
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                                  initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL))


def parallel_map(fn, jobs, workers: int):
    """`fn` over an iterable of jobs, results in order, in `workers` forked processes (1: here).
    At most two jobs per worker run ahead of the reader, so an endless iterable is fine. When the
    reader stops, the jobs not yet started are cancelled and the running ones finish: no worker is
    killed mid-write, which can leave half a result in a pipe that `multiprocessing.Pool.terminate`
    then waits on forever (the record, 2026-12-07). Close the generator to stop it."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    pool, pending = worker_pool(workers), deque()
    try:
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _generate_chunk(job: tuple) -> list[dict]:
    start, stop, seed, split, game = job
    return [generate_problem(i, seed, split, game) for i in range(start, stop)]


def generate_problems(n: int, seed: int = 0, split: str = "train", game: GameConfig = GameConfig(),
                      workers: int = 1, chunk: int = 256, progress: bool = False):
    """Yield n problems of a split in index order; the same for any number of workers.

    Val and test skip a problem whose (sorted numbers, target) pair appeared earlier in the
    split, so evaluation never counts a problem twice; the skip depends only on the problems
    before it, so it is as reproducible as they are.
    """
    if n < 0:
        raise ValueError(f"--n must be non-negative (got {n})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    game.validate()
    generate_problem(0, seed, split, game)  # fail fast, in this process, on impossible parameters
    unique = split != "train"
    seen = set()
    bar = _progress_bar(n, f"{split} problems") if progress else None

    def jobs():
        for start in itertools.count(0, chunk):
            yield (start, start + chunk, seed, split, game)

    chunks = parallel_map(_generate_chunk, jobs(), workers)
    try:
        emitted, repeats_in_a_row = 0, 0
        for problems in chunks:
            for problem in problems:
                if unique:
                    key = (tuple(sorted(problem["nums"])), problem["target"])
                    if key in seen:
                        repeats_in_a_row += 1
                        if repeats_in_a_row > MAX_REPEATS:
                            raise ValueError(
                                f"the {split} split of this task has only about {len(seen):,} distinct "
                                f"problems, fewer than --n {n:,}; ask for fewer or widen the ranges")
                        continue
                    seen.add(key)
                    repeats_in_a_row = 0
                if emitted == n:
                    return
                yield problem
                emitted += 1
                if bar:
                    bar.update(1)
            if emitted == n:
                return
    finally:
        chunks.close()
        if bar:
            bar.close()


def problems_file(game: GameConfig, split: str, n: int, data_dir: str = "data", seed: int = 0,
                  workers: int = 1, log=print) -> str:
    """Path of the first n problems of a split of a task, `data/<task>/<split>_<n>.jsonl`, made
    on first use. Training and evaluation both find their problems here."""
    path = os.path.join(data_dir, game.name, f"{split}_{n}.jsonl")
    if not os.path.exists(path):
        log(f"making {n:,} {split} problems -> {path}")
        problems = generate_problems(n, seed=seed, split=split, game=game, workers=workers)
        write_atomically(path, (json.dumps(p) + "\n" for p in problems))
    return path


def _progress_bar(total: int, desc: str):
    """tqdm if installed (it is a project dependency), else nothing: this file stays stdlib-only."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="", dynamic_ncols=True, file=sys.stderr)


def read_problems(path: str) -> list[dict]:
    """Load a problems file (JSON lines with `nums` and `target`), with one-line errors."""
    if os.path.isdir(path):
        raise ValueError(f"problems file {path} is a folder; give a .jsonl file")
    if not os.path.exists(path):
        raise ValueError(f"problems file {path} does not exist; make it with "
                         f"`python countdown.py --split train --n 1000 --out {path}`")
    problems = []
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                why = problem_error(record["nums"], record["target"])
            except (json.JSONDecodeError, KeyError, TypeError):
                why = "want a JSON object with a list of integers `nums` and an integer `target`"
            if why:
                raise ValueError(f"{path}:{line_number}: not a problem: {why}")
            problems.append(record)
    return problems


def write_atomically(path: str, lines) -> int:
    """Write an iterable of text lines to path via a temporary file and a rename; return the count.

    If anything fails midway (an error, Ctrl-C) the temporary file is removed and any earlier
    file at `path` is untouched: a reader never sees half a file. A path that is a folder, or one
    that cannot be written, is a ValueError naming it.
    """
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give a file name to write")
    clear_stale_temporaries(path)
    tmp = f"{path}.tmp{os.getpid()}"
    count = 0
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "w") as f:
            for line in lines:
                f.write(line)
                count += 1
        os.replace(tmp, path)
    except OSError as error:
        _remove(tmp)
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        _remove(tmp)
        raise
    return count


def ensure_folder(path: str, what: str = "--out") -> str:
    """Make the folder `path` (a run folder, a figures folder) if it is missing; ValueError naming
    it when it is a file or cannot be written, before any work goes into it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{what} {path}: cannot make the folder ({error.strerror or error})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: the folder cannot be written")
    return path


def clear_stale_temporaries(path: str) -> None:
    """Remove `path.tmp<pid>` files that writers killed before they could clean up left behind:
    those whose process no longer runs (a live writer's file is its own business)."""
    for tmp in glob.glob(glob.escape(path) + ".tmp*"):
        pid = tmp[len(path) + 4:]
        if pid.isdigit() and not _process_runs(int(pid)):
            _remove(tmp)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


# ---------------------------------------------------------------------------------------------
# The verifier. Strict: every step is replayed on a multiset of the inputs.

GOAL = "Goal Reached"
_MAX_DIGITS = 18  # no honest number in a trace is this long; longer ones are malformed, not slow
# a number as the game writes it: ASCII digits (`\d` would take any script's), no leading zeros
_NUMBER = rf"(?:0|[1-9][0-9]{{0,{_MAX_DIGITS - 1}}})"
_STEP = re.compile(rf"Exploring Operation: ({_NUMBER})([-+*/])({_NUMBER})=({_NUMBER}), "
                   rf"Resulting Numbers: \[((?:{_NUMBER}(?:, {_NUMBER})*)?)\]")
_GOAL_LINE = re.compile(rf"({_NUMBER}),({_NUMBER}) equal: {GOAL}")


def extract_answer(text: str) -> str | None:
    """The text after the second-to-last `Goal Reached`: the summary path a search ends with.

    A trace announces the goal once when it finds it, then writes the path from the start to the
    goal, ending in a second `Goal Reached`; everything before that is search. None when there
    are fewer than two.
    """
    if not isinstance(text, str):
        return None
    last = text.rfind(GOAL)
    if last < 0:
        return None
    second_to_last = text.rfind(GOAL, 0, last)
    if second_to_last < 0:
        return None
    return text[second_to_last + len(GOAL):]


def answer_steps(answer: str | None) -> tuple[str, ...]:
    """The operations an answer writes, in order (`('9+11=20', '20-3=17')`): what two answers
    must share to be the same answer in a majority vote. Empty for no answer."""
    if not isinstance(answer, str):
        return ()
    return tuple(f"{m[1]}{m[2]}{m[3]}={m[4]}" for m in _STEP.finditer(answer))


def _apply(x: int, symbol: str, y: int) -> int | None:
    """Exact integer result of `x symbol y` under the game's rules, or None if it is not allowed."""
    if symbol == "+":
        return x + y
    if symbol == "*":
        return x * y
    if symbol == "-":
        return x - y if x >= y else None  # the game writes larger minus smaller: never negative
    if y == 0 or x % y != 0:
        return None  # division by zero or inexact division
    return x // y


def arithmetic_slips(text: str) -> tuple[int, int]:
    """(steps written, steps whose arithmetic is wrong) over every `Exploring Operation` of a
    text, answer or not: how often a model miscalculates, which the verdict alone hides."""
    steps = [(int(m[1]), m[2], int(m[3]), int(m[4])) for m in _STEP.finditer(text)]
    return len(steps), sum(_apply(x, symbol, y) != stated for x, symbol, y, stated in steps)


def check_solution(nums: list[int], target: int, answer: str) -> bool:
    """Replay every `Exploring Operation` of an answer on the multiset of inputs; True if valid.

    Each step's operands must be present (each use removes one copy), its arithmetic exact and
    stated correctly, and its `Resulting Numbers` equal to the multiset afterwards. The answer
    must end in `{T},{T} equal: Goal Reached` with exactly [T] left. Lines other than steps
    (Current State, Generated Node, Moving to Node) carry no numbers the check relies on.
    """
    try:
        if not isinstance(answer, str):
            return False
        goal_at = answer.rfind(GOAL)
        if goal_at < 0:
            return False
        path, goal_line = answer[:goal_at], answer[:goal_at + len(GOAL)].rsplit("\n", 1)[-1]
        goal = _GOAL_LINE.fullmatch(goal_line)
        if not goal or int(goal.group(1)) != target or int(goal.group(2)) != target:
            return False
        remaining = Counter(nums)
        steps = 0
        for line in path.split("\n"):
            if "Exploring Operation" not in line:
                continue
            step = _STEP.fullmatch(line)
            if not step:
                return False  # a step we cannot read is a wrong step
            x, symbol, y, stated = int(step[1]), step[2], int(step[3]), int(step[4])
            remaining[x] -= 1
            remaining[y] -= 1
            if remaining[x] < 0 or remaining[y] < 0:
                return False  # an operand that is not (or no longer) available
            if _apply(x, symbol, y) != stated:
                return False
            remaining[stated] += 1
            listed = Counter(int(v) for v in step[5].split(", ")) if step[5] else Counter()
            if listed != +remaining:
                return False
            steps += 1
        return steps > 0 and +remaining == Counter([target])
    except Exception:  # hostile input must never escape as an exception
        return False


def is_correct(nums: list[int], target: int, text: str) -> bool:
    """The verdict on a whole trace: its answer exists and replays to the target."""
    answer = extract_answer(text)
    return answer is not None and check_solution(nums, target, answer)


def reward(nums: list[int], target: int, text: str) -> float:
    """The RL reward: 1 for a verified answer, else 0."""
    return 1.0 if is_correct(nums, target, text) else 0.0


# ---------------------------------------------------------------------------------------------
# Command line

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate solvable Countdown problems as JSON lines "
                    "({nums, target, solution}), reproducible from --seed for any --workers.")
    # what to generate
    parser.add_argument("--split", choices=SPLITS, default="train",
                        help="which split; splits never share a (sorted numbers, target) pair")
    parser.add_argument("--n", type=int, default=1000, help="how many problems")
    parser.add_argument("--seed", type=int, default=0, help="problem i depends only on (seed, split, i)")
    parser.add_argument("--out", required=True, help="output .jsonl path (written atomically)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    # the game (defaults: the paper's task)
    game_defaults = GameConfig()
    parser.add_argument("--count", type=int, default=game_defaults.count, help="numbers per problem")
    parser.add_argument("--num-min", type=int, default=game_defaults.num_min, help="smallest input number")
    parser.add_argument("--num-max", type=int, default=game_defaults.num_max, help="largest input number")
    parser.add_argument("--target-min", type=int, default=game_defaults.target_min, help="smallest target")
    parser.add_argument("--target-max", type=int, default=game_defaults.target_max, help="largest target")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    game = GameConfig(args.count, args.num_min, args.num_max, args.target_min, args.target_max)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1 (got {args.workers})")
        if args.n < 1:
            raise ValueError(f"--n must be at least 1 (got {args.n}): a file of no problems is of no use")
        problems = generate_problems(args.n, args.seed, args.split, game, args.workers,
                                     progress=not args.quiet)
        count = write_atomically(args.out, (json.dumps(p) + "\n" for p in problems))
    except ValueError as error:
        print(f"countdown.py: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {count:,} {args.split} problems to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
