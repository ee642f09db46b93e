"""
Symbolic Countdown solvers that write their search out as text: the demonstrations the language
model imitates. Four of them, in the order the literature introduced them:

- `dfs`  Stream of Search's depth-first search (prune by heuristic, backtrack in text).
- `bfs`  Stream of Search's best-first beam search (a fixed beam, one text, no sub searches).
- `sosp` SoS+, the serial hybrid: at a "promising" node the children are searched one after
         another as nested sub searches, all in one text.
- `apr`  APR, the parallel hybrid: at a promising node the parent *spawns* its children as
         separate threads, each with a short context of its own, and later *joins* what they
         found. A demonstration is a thread tree, not one text.

    python search.py --mode apr --problems data/train.jsonl --out data/train_apr.jsonl --workers 2

The exact text of every line is written here and described in `docs/how-it-works.md`. Every
search that finds the goal ends with a summary path (`Moving to Node #start` ... a second
`Goal Reached`), so one verifier (`countdown.is_correct`) and one answer rule serve all four.

This file also owns the spawn/join *text logic*: how a parent's spawn block becomes child
prompts, and how a parent's text and its children's texts become the parent's context after the
join (`parse_spawn`, `child_prompt`, `child_result`, `join`). The solver writes its
demonstrations with it and the rollout engine imports it, so training data and inference can
never disagree about that text.

Defaults are the authors' code: SoS+ beam drawn from 1..5 per problem, promising probability
0.5; APR parent beam from 1..10, child beam from parent beam..15, promising probability 0.9,
a spawn only when more than one non-leaf child was kept, children never spawn (`--depth 1`).
`--child-beam-min` (ours) lets the children's beam start elsewhere than at the parent's: with
min = max the children search with a fixed beam, below or above the parent's.
One change on purpose: after a failed join, their APR solver's next `Moving to Node` line was
often missing or named the wrong node (a loop variable was shadowed); ours names the node that
is expanded next. Every random choice of a problem's search comes from (seed, problem index),
so output is the same for any number of workers.

No torch here: this file is the data side of the project.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import itertools
import json
import random
import re
import statistics
import sys
from dataclasses import asdict, dataclass

from operator import itemgetter

from countdown import GOAL, extract_answer, move_parts, parallel_map, read_problems, write_atomically

# ---------------------------------------------------------------------------------------------
# Heuristics (lower is better). The data of the paper uses `mult` everywhere. A heuristic is a
# sum over the numbers of a per-number distance, so it is given as that distance: the solvers
# score a successor from its parent's remaining numbers plus one new value.

class Heuristic:
    """h(nums) = sum over the numbers of a distance d(v), divided by len(nums) if `mean`.

    Both heuristics agree that d(v) = v - target at or above the target, so d is stored as a
    table `below` for 0 <= v < target.
    """

    def __init__(self, target: int, below: list, mean: bool):
        self.target, self.below, self.mean = target, below, mean

    def distance(self, v: int) -> int:
        return self.below[v] if v < self.target else v - self.target

    def __call__(self, nums) -> float:
        total = sum(self.distance(v) for v in nums)
        return total / len(nums) if self.mean else total


@functools.lru_cache(maxsize=None)  # one table per target, shared by every problem with it
def mult_heuristic(target: int) -> Heuristic:
    """Sum over the numbers of the distance to the nearest factor f of the target, 2 <= f <= target
    (the authors' code). At or above the target the nearest factor is the target itself."""
    factors = [f for f in range(2, target + 1) if target % f == 0]
    return Heuristic(target, [min(abs(v - f) for f in factors) for v in range(target)], mean=False)


@functools.lru_cache(maxsize=None)
def sum_heuristic(target: int) -> Heuristic:
    """Mean distance of the numbers to the target (Stream of Search)."""
    return Heuristic(target, [target - v for v in range(target)], mean=True)


HEURISTICS = {"mult": mult_heuristic, "sum": sum_heuristic}


# ---------------------------------------------------------------------------------------------
# Search nodes and the lines of the trace

class Node:
    """A search state: current numbers, operations from the root, id (`0`, `0,1`, ...), heuristic."""
    __slots__ = ("nums", "ops", "idx", "h", "parent")

    def __init__(self, nums, ops, idx, h, parent):
        self.nums, self.ops, self.idx, self.h, self.parent = nums, ops, idx, h, parent


def state_line(target, node) -> str:
    return f"Current State: {target}:{node.nums}, Operations: {node.ops}\n"


def summary_path(target: int, goal: Node, start: Node) -> str:
    """The path from `start` to the goal leaf, the way every successful search ends."""
    chain = [goal]
    while chain[-1] is not start:
        chain.append(chain[-1].parent)
    chain.reverse()
    lines = [f"Moving to Node #{start.idx}\n"]
    for node, nxt in zip(chain, chain[1:]):
        lines.append(state_line(target, node))
        lines.append(f"Exploring Operation: {nxt.ops[-1]}, Resulting Numbers: {nxt.nums}\n")
        if nxt is goal:
            lines.append(f"{target},{target} equal: {GOAL}\n")
        else:
            lines.append(f"Generated Node #{nxt.idx}: {target}:{nxt.nums} Operation: {nxt.ops[-1]}\n")
            lines.append(f"Moving to Node #{nxt.idx}\n")
    return "".join(lines)


def successors(node: Node, h: Heuristic) -> list[tuple]:
    """Every move from a node as (heuristic, other numbers, move), in the game's order; a move is
    countdown.move_parts' (result, x, symbol, y). The new numbers are the others plus the result;
    both they and the move's text are only built for the few successors that get written.

    This loop is most of the solvers' time: the distance of the remaining numbers is summed once
    per pair, and the new value's distance added to it (in the same order as summing the new
    list, so the floats of the mean heuristic are identical).
    """
    nums, distance = node.nums, h.distance
    mean, size = h.mean, len(nums) - 1
    out = []
    for i, j, others in _pairs(len(nums)):
        rest = [nums[k] for k in others]
        rest_sum = sum(distance(v) for v in rest)
        for move in move_parts(nums[i], nums[j]):
            score = rest_sum + distance(move[0])
            out.append((score / size if mean else score, rest, move))
    return out


@functools.lru_cache(maxsize=None)
def _pairs(n: int) -> list[tuple]:
    """(i, j, the other positions in order) for every pair i < j of n positions, in game order."""
    return [(i, j, [k for k in range(n) if k != i and k != j])
            for i, j in itertools.combinations(range(n), 2)]


def op_text(move) -> str:
    value, x, symbol, y = move
    return f"{x}{symbol}{y}={value}"


_SCORE = itemgetter(0)


_PERMUTATIONS = [list(itertools.permutations(range(k))) for k in range(6)]


def shuffled(items: list, rng: random.Random) -> list:
    """A uniformly random order of items. Most lists here hold 2 to 5 moves, and one draw from a
    table of their permutations costs a fraction of `random.shuffle`'s draw per element."""
    k = len(items)
    if k < 2:
        return items
    if k < len(_PERMUTATIONS):
        table = _PERMUTATIONS[k]
        return [items[i] for i in table[int(rng.random() * len(table))]]
    rng.shuffle(items)
    return items


# ---------------------------------------------------------------------------------------------
# The spawn/join text logic: one implementation, used by the APR solver and the rollout engine

SPAWN_OPEN = "<Calling Sub Searches>\n"
SPAWN_CLOSE = "<End Calling Sub Searches>\n"
JOIN_OPEN = "<Sub Searches>\n"
JOIN_CLOSE = "<End Sub Searches>\n"
_SPAWN_LINE = re.compile(r"<Start Sub Search (\d+) at level (\d+)> Moving to Node #(\d+(?:,\d+)*)")
_GENERATED = re.compile(r"Generated Node #(\d+(?:,\d+)*): (\d+):\[([\d, ]*)\] Operation: (\S+)")
_STATE = re.compile(r"Current State: (\d+):\[([\d, ]*)\], Operations: \[(.*)\]")
_OP_IN_LIST = re.compile(r"'([^']*)'")


class SpawnError(ValueError):
    """A spawn block the runtime cannot act on; its message is the recorded reason."""


def spawn_block(node_ids: list[str], level: int) -> str:
    """What a parent at `level - 1` writes to launch children at `level`, one per node id."""
    lines = [f"<Start Sub Search {i} at level {level}> Moving to Node #{idx}\n"
             for i, idx in enumerate(node_ids)]
    return SPAWN_OPEN + "".join(lines) + SPAWN_CLOSE


def parse_spawn(text: str) -> tuple[str, int, list[str]]:
    """Split a parent's text that ends in a spawn block into (text before it, level, node ids).

    The block must be the last `<Calling Sub Searches>` line, then lines numbered 0, 1, ... at
    one level, then optionally `<End Calling Sub Searches>`; the runtime may call this on a block
    the model ended early (a join block it started to write itself counts as the end).
    Raises SpawnError with the reason for anything else.
    """
    start = text.rfind(SPAWN_OPEN)
    if start < 0:
        raise SpawnError("no <Calling Sub Searches> line")
    body = text[start + len(SPAWN_OPEN):]
    for end_marker in (SPAWN_CLOSE, JOIN_OPEN):
        if end_marker in body:
            body = body[:body.index(end_marker)]
    ids, levels = [], set()
    for line in body.split("\n"):
        if not line:
            continue
        match = _SPAWN_LINE.fullmatch(line)
        if not match:
            raise SpawnError(f"unreadable spawn line {line[:80]!r}")
        if int(match[1]) != len(ids):
            raise SpawnError(f"sub search numbered {match[1]}, expected {len(ids)}")
        levels.add(int(match[2]))
        ids.append(match[3])
    if not ids:
        raise SpawnError("empty spawn block")
    if len(levels) != 1:
        raise SpawnError(f"children at several levels {sorted(levels)}")
    return text[:start], levels.pop(), ids


def child_prompt(parent_text: str, node_id: str) -> str:
    """A child's whole context: `Moving to Node #id` and the node's `Current State` line.

    The node's numbers come from its `Generated Node #id` line in the parent's text (the last one,
    should the model have written it twice); its operations are those of the `Current State` line
    that the generating expansion started with, plus its own. Raises SpawnError for a node the
    parent never generated.
    """
    marker = f"Generated Node #{node_id}: "
    at = parent_text.rfind(marker)
    if at < 0:
        raise SpawnError(f"spawn names node #{node_id}, which the parent never generated")
    line_end = parent_text.find("\n", at)
    generated = _GENERATED.fullmatch(parent_text[at:line_end if line_end >= 0 else None])
    state_at = parent_text.rfind("Current State: ", 0, at)
    state_end = parent_text.find("\n", state_at)
    state = _STATE.fullmatch(parent_text[state_at:state_end]) if state_at >= 0 else None
    if not generated or not state:
        raise SpawnError(f"cannot rebuild the state of node #{node_id} from the parent's text")
    target, nums = generated[2], [int(x) for x in generated[3].split(", ") if x]
    ops = _OP_IN_LIST.findall(state[3]) + [generated[4]]
    return f"Moving to Node #{node_id}\nCurrent State: {target}:{nums}, Operations: {ops}\n"


def child_result(child_text: str | None) -> str | None:
    """What a child returns to its parent: its summary path if it reached the goal, else None.

    The summary path is the child's text after its second-to-last `Goal Reached`, from its
    `Moving to Node` line through the last `Goal Reached` line. A child that was cut off or never
    wrote both lines returns None (`No Solution` in the join block).
    """
    answer = extract_answer(child_text) if child_text else None
    if answer is None:
        return None
    begin = answer.find("Moving to Node #")
    if begin < 0:
        return None
    end = answer.rfind(GOAL)
    return answer[begin:end + len(GOAL)] + "\n"


def join_block(level: int, node_ids: list[str], results: list[str | None]) -> str:
    """The block the runtime writes into the parent's context when all its children are done."""
    lines = [JOIN_OPEN]
    for i, (idx, result) in enumerate(zip(node_ids, results)):
        if result is None:
            lines.append(f"<No Solution in Sub Search {i} at level {level} at Node #{idx}>\n")
        else:
            lines.append(f"<Goal Reached in Sub Search {i} at level {level} at Node #{idx}>\n")
            lines.append(result)
    lines.append(JOIN_CLOSE)
    return "".join(lines)


def join(parent_text: str, child_texts: list[str | None]) -> str:
    """The parent's context after a join: its text before the spawn block, then the join block.

    `child_texts[i]` is child i's whole text (prompt included) or None for a child that failed.
    """
    before, level, ids = parse_spawn(parent_text)
    if len(child_texts) != len(ids):
        raise SpawnError(f"{len(child_texts)} child texts for {len(ids)} children")
    return before + join_block(level, ids, [child_result(t) for t in child_texts])


def root_prompt(nums: list[int], target: int, parallel: bool) -> str:
    """What the runtime gives a model to start a problem: the root's state (an APR parent also
    gets the `Moving to Node #0` line its children's prompts begin with)."""
    state = f"Current State: {target}:{list(nums)}, Operations: []\n"
    return "Moving to Node #0\n" + state if parallel else state


def condition_prefix(mode: str, budget: int | None) -> str:
    """The optional conditioning prefix before a root prompt: SoS+ is told a
    token budget, an APR parent how many child threads to use."""
    if budget is None:
        return ""
    return f"Token Budget: {budget} " if mode == "sosp" else f"Sub Call Budget: {budget} "


def record_trace(record: dict) -> dict:
    """A demonstration's calls in `lm_calls`'s form: APR records carry their tree, a SoS+ record
    is one call, its whole search path."""
    if record["mode"] == "apr":
        return record["trace_dict"]
    return {"main_calls": [record["search_path"]], "sub_calls": []}


def lm_calls(trace_dict: dict, prefix: str = "", root: bool = True):
    """Every LM call of a demonstration's thread tree as a list of (text, written) segments:
    `written` is False for what the runtime injects (conditioning prefix, prompt, the parent's
    earlier text and the join block of a continued call) and True for what the model writes.
    A call that ends in a spawn block does not end the thread; the last call of a thread does.
    Yields (segments, ends_thread)."""
    calls = trace_dict["main_calls"]
    for k, text in enumerate(calls):
        if k == 0:
            prompt_end = text.index("\n", text.index("Current State: ")) + 1  # two prompt lines
        else:
            children = trace_dict["sub_calls"][k - 1]
            prompt_end = len(join(calls[k - 1], [child["main_calls"][-1] for child in children]))
        yield [(prefix if root else "", False), (text[:prompt_end], False), (text[prompt_end:], True)], \
            k == len(calls) - 1
    for spawn in trace_dict["sub_calls"]:
        for child in spawn:
            yield from lm_calls(child, root=False)


# ---------------------------------------------------------------------------------------------
# The solvers

@dataclass
class SearchConfig:
    """Settings of the solvers; the defaults are those of the authors' code."""
    heuristic: str = "mult"        # "mult", "sum", or "random" (one per problem, as SoS did)
    beam_min: int = 1              # beam (successors kept per expansion, nodes popped per round)
    beam_max: int = 5              #   drawn per problem from beam_min..beam_max (5 for SoS+)
    child_beam_min: int = 0        # APR: child beam drawn from child_beam_min (0: the parent's beam)
    child_beam_max: int = 15       #   ..child_beam_max
    promising: float = 0.5         # probability that an expanded node is searched in depth
    min_spawn_children: int = 2    # APR: spawn only with at least this many non-leaf children
    depth: int = 1                 # APR: how many levels of threads may spawn (1 = only the root)


DEFAULTS = {
    "dfs": SearchConfig(heuristic="random"),
    "bfs": SearchConfig(heuristic="random", promising=0.0),
    "sosp": SearchConfig(),
    "apr": SearchConfig(beam_max=10, promising=0.9),
}


class Searcher:
    """One problem's search: the target, its heuristic and its random stream."""

    def __init__(self, target: int, heuristic, rng: random.Random, config: SearchConfig):
        self.target, self.h, self.rng, self.config = target, heuristic, rng, config

    def write_move(self, node: Node, h, rest: list, move, number: int, lines: list):
        """Write one successor of `node`: its `Exploring Operation` line, then a leaf check (the
        goal, or `No Solution`) or, with numbers left, a `Generated Node` line for child `number`.
        Returns (goal leaf or None, new child or None)."""
        target = self.target
        nums, op = rest + [move[0]], op_text(move)
        lines.append(f"Exploring Operation: {op}, Resulting Numbers: {nums}\n")
        if len(nums) == 1:
            if nums[0] == target:
                lines.append(f"{target},{target} equal: {GOAL}\n")
                return Node(nums, node.ops + [op], None, h, node), None
            lines.append(f"{nums[0]},{target} unequal: No Solution\n")
            return None, None
        child = Node(nums, node.ops + [op], f"{node.idx},{number}", h, node)
        lines.append(f"Generated Node #{child.idx}: {target}:{nums} Operation: {op}\n")
        return None, child

    def expand(self, node: Node, beam: int, lines: list):
        """Write one expansion: keep the best `beam` successors (`keep`) and write each one.
        Returns (goal leaf or None, the non-leaf children, best first)."""
        children = []
        for h, rest, move in self.keep(successors(node, self.h), beam):
            goal, child = self.write_move(node, h, rest, move, len(children), lines)
            if goal:
                return goal, []
            if child:
                children.append(child)
        children.sort(key=lambda c: c.h)
        return None, children

    def keep(self, found: list, beam: int) -> list:
        """The `beam` best successors (a stable sort by heuristic), in the order they are written:
        shuffled, as the authors' solver writes them (children are then visited or spawned best
        first, whatever order they were written in)."""
        found.sort(key=_SCORE)
        return shuffled(found[:beam], self.rng)

    # -- Stream of Search DFS ---------------------------------------------------------------
    def dfs(self, node: Node, root: Node, lines: list):
        """Depth-first: successors within the prune threshold (h <= target), best first."""
        target = self.target
        lines.append(state_line(target, node))
        found = [s for s in successors(node, self.h) if s[0] <= target]
        found.sort(key=_SCORE)
        number = 0
        for k, (h, rest, move) in enumerate(found):
            goal, child = self.write_move(node, h, rest, move, number, lines)
            if goal:
                lines.append(summary_path(target, goal, root))
                return goal
            if child:
                number += 1
                lines.append(f"Moving to Node #{child.idx}\n")
                goal = self.dfs(child, root, lines)
                if goal:
                    return goal
            if k < len(found) - 1:  # back at this node: say so, and where we stand
                lines.append(f"Moving to Node #{node.idx}\n")
                lines.append(state_line(target, node))
        return None

    # -- BFS and SoS+ (serial) --------------------------------------------------------------
    def serial(self, start: Node, root: Node, beam: int, level: int, lines: list):
        """Beam search from `start`; at a promising node, each child is searched in turn as a
        nested sub search. With promising = 0 this is Stream of Search's BFS."""
        target, p = self.target, self.config.promising
        heap, tie = [(start.h, 0, start)], itertools.count(1)  # ties pop first-in, first-out
        while heap:
            batch = [heapq.heappop(heap)[2] for _ in range(min(beam, len(heap)))]
            for k, node in enumerate(batch):
                lines.append(state_line(target, node))
                goal, children = self.expand(node, beam, lines)
                if goal:
                    lines.append(summary_path(target, goal, root))
                    return goal
                promising = p > 0 and self.rng.random() < p
                for child in children:
                    if not promising:
                        heapq.heappush(heap, (child.h, next(tie), child))
                        continue
                    lines.append(f"Start Sub Search at level {level + 1}: Moving to Node #{child.idx}\n")
                    goal = self.serial(child, root, beam, level + 1, lines)
                    lines.append(f"Exit Sub Search at level {level + 1}\n")
                    if goal:
                        return goal
                    lines.append("No solution found in sub search\n")
                if k < len(batch) - 1:
                    lines.append(f"Moving to Node #{batch[k + 1].idx}\n")
            if heap:
                lines.append(f"Moving to Node #{heap[0][2].idx}\n")
        lines.append("No solution found.\n")
        return None

    # -- APR (parallel) ---------------------------------------------------------------------
    def parallel(self, start: Node, beam: int, child_beam: int, level: int):
        """Beam search in one thread; at a promising node with enough children, spawn them.

        Returns (trace_dict, goal). trace_dict["main_calls"][k] is this thread's k-th LM call
        (the last one is its final text); trace_dict["sub_calls"][k] lists the children's
        trace_dicts of its k-th spawn.
        """
        target, config = self.target, self.config
        calls, sub_calls = [], []
        lines = [f"Moving to Node #{start.idx}\n"]
        heap, tie = [(start.h, 0, start)], itertools.count(1)
        while heap:
            batch = [heapq.heappop(heap)[2] for _ in range(min(beam, len(heap)))]
            for k, node in enumerate(batch):
                lines.append(state_line(target, node))
                goal, children = self.expand(node, beam, lines)
                if goal:
                    lines.append(summary_path(target, goal, start))
                    return {"main_calls": calls + ["".join(lines)], "sub_calls": sub_calls}, goal
                spawn = (level < config.depth and len(children) >= config.min_spawn_children
                         and self.rng.random() < config.promising)
                if not spawn:
                    for child in children:
                        heapq.heappush(heap, (child.h, next(tie), child))
                else:
                    results = [self.parallel(child, child_beam, child_beam, level + 1) for child in children]
                    sub_calls.append([trace for trace, _ in results])
                    before = "".join(lines)
                    ids = [child.idx for child in children]
                    calls.append(before + spawn_block(ids, level + 1))
                    summaries = [summary_path(target, goal, child) if goal else None
                                 for child, (_, goal) in zip(children, results)]
                    lines = [before, join_block(level + 1, ids, summaries)]
                    winner = next((goal for _, goal in results if goal), None)
                    if winner:
                        lines.append(f"{target},{target} equal: {GOAL}\n")
                        lines.append(summary_path(target, winner, start))
                        return {"main_calls": calls + ["".join(lines)], "sub_calls": sub_calls}, winner
                if k < len(batch) - 1:
                    lines.append(f"Moving to Node #{batch[k + 1].idx}\n")
            if heap:
                lines.append(f"Moving to Node #{heap[0][2].idx}\n")
        lines.append("No solution found.\n")
        return {"main_calls": calls + ["".join(lines)], "sub_calls": sub_calls}, None


# ---------------------------------------------------------------------------------------------
# Demonstrations: one record per problem

def thread_texts(trace_dict: dict) -> list[str]:
    """Every LM call of a thread tree: the thread's calls, then its children's, depth first."""
    texts = list(trace_dict["main_calls"])
    for spawn in trace_dict["sub_calls"]:
        for child in spawn:
            texts.extend(thread_texts(child))
    return texts


def spawn_sizes(trace_dict: dict) -> list[int]:
    """Children per spawn, over every thread of the tree."""
    sizes = [len(spawn) for spawn in trace_dict["sub_calls"]]
    for spawn in trace_dict["sub_calls"]:
        for child in spawn:
            sizes.extend(spawn_sizes(child))
    return sizes


def demonstrate(problem: dict, index: int, mode: str, seed: int, config: SearchConfig) -> dict:
    """Search one problem with a solver; all randomness comes from (seed, mode, index)."""
    rng = random.Random(f"search:{seed}:{mode}:{index}")
    nums, target = list(problem["nums"]), problem["target"]
    name = config.heuristic if config.heuristic != "random" else rng.choice(sorted(HEURISTICS))
    h = HEURISTICS[name](target)
    root = Node(nums, [], "0", h(nums), None)
    beam = rng.randint(config.beam_min, config.beam_max)
    searcher = Searcher(target, h, rng, config)
    record = {"nums": nums, "target": target, "mode": mode, "heuristic": name}
    if mode == "apr":
        lowest = config.child_beam_min or beam  # the authors: from the parent's beam
        child_beam = rng.randint(lowest, max(lowest, config.child_beam_max))
        trace_dict, goal = searcher.parallel(root, beam, child_beam, level=0)
        texts = thread_texts(trace_dict)
        record.update(beam_size=beam, child_beam_size=child_beam, search_path=trace_dict["main_calls"][-1],
                      trace_dict=trace_dict, spawns=spawn_sizes(trace_dict))
    else:
        lines = []
        if mode == "dfs":
            goal = searcher.dfs(root, root, lines)
            if not goal:
                lines.append("No solution found.\n")
        else:
            record["beam_size"] = beam
            goal = searcher.serial(root, root, beam, 0, lines)
        record["search_path"] = "".join(lines)
        texts = [record["search_path"]]
    record.update(solved=goal is not None, sequences=len(texts), chars=[len(t) for t in texts])
    return record


_STAT_FIELDS = ("solved", "sequences", "chars", "spawns")


def _demonstrate_chunk(job):
    """A worker's share: records, or (JSON line, the few fields `summarize` needs) when writing a
    file, so that serializing happens in the workers and only short strings cross processes."""
    start, problems, mode, seed, config, as_json = job
    records = [demonstrate(p, start + i, mode, seed, config) for i, p in enumerate(problems)]
    if not as_json:
        return records
    return [(json.dumps(r) + "\n", {k: r[k] for k in _STAT_FIELDS if k in r}) for r in records]


def demonstrate_all(problems: list[dict], mode: str, seed: int = 0, config: SearchConfig | None = None,
                    workers: int = 1, chunk: int = 64, progress: bool = False, as_json: bool = False):
    """Yield one demonstration per problem, in order, the same for any number of workers."""
    config = config or DEFAULTS[mode]
    jobs = ((i, problems[i:i + chunk], mode, seed, config, as_json) for i in range(0, len(problems), chunk))
    chunks = parallel_map(_demonstrate_chunk, jobs, workers)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(problems), desc=f"{mode} demonstrations", dynamic_ncols=True, file=sys.stderr)
    try:
        for records in chunks:
            yield from records
            if bar:
                bar.update(len(records))
    finally:
        chunks.close()  # an early exit (an error, a consumer that stopped reading) cancels what is left
        if bar:
            bar.close()


def summarize(records: list[dict]) -> dict:
    """The numbers the CLI prints at the end; the tests check them against the authors' figures."""
    chars = [c for r in records for c in r["chars"]]
    spawn_counts = [len(r.get("spawns", [])) for r in records]
    spawn_sizes_all = [s for r in records for s in r.get("spawns", [])]
    n = max(1, len(records))
    return {
        "problems": len(records),
        "solved": sum(r["solved"] for r in records) / n,
        "chars_mean": statistics.fmean(chars) if chars else 0.0,
        "chars_median": statistics.median(chars) if chars else 0,
        "chars_max": max(chars, default=0),
        "sequences_per_problem": sum(r["sequences"] for r in records) / n,
        "problems_with_spawn": sum(c > 0 for c in spawn_counts) / n,
        "spawns_per_problem": sum(spawn_counts) / n,
        "children_per_spawn": statistics.fmean(spawn_sizes_all) if spawn_sizes_all else 0.0,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Write search demonstrations (JSON lines, one per problem) with a symbolic solver.")
    parser.add_argument("--mode", choices=sorted(DEFAULTS), required=True,
                        help="dfs / bfs (Stream of Search), sosp (SoS+, serial), apr (parallel)")
    parser.add_argument("--problems", required=True, help="problems .jsonl from countdown.py")
    parser.add_argument("--out", required=True, help="output .jsonl (written atomically)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="problem i's search depends only on (seed, mode, i)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # solver settings; unset ones take the mode's defaults (the authors' code)
    parser.add_argument("--heuristic", choices=["mult", "sum", "random"], help="node ordering heuristic")
    parser.add_argument("--beam-min", type=int, help="smallest beam drawn per problem")
    parser.add_argument("--beam-max", type=int, help="largest beam drawn per problem (sosp 5, apr 10)")
    parser.add_argument("--child-beam-min", type=int, help="apr: smallest child beam (default: the parent's beam)")
    parser.add_argument("--child-beam-max", type=int, help="apr: largest child beam (15)")
    parser.add_argument("--promising", type=float, help="probability a node is searched in depth (sosp 0.5, apr 0.9)")
    parser.add_argument("--min-spawn-children", type=int, help="apr: fewest non-leaf children to spawn (2)")
    parser.add_argument("--depth", type=int, help="apr: thread levels that may spawn (1 = the paper)")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in vars(args).items()
                 if k in SearchConfig.__dataclass_fields__ and v is not None}
    config = SearchConfig(**{**asdict(DEFAULTS[args.mode]), **overrides})
    try:
        _check_config(config, args)
        problems = read_problems(args.problems)[:args.limit]
        records = []

        def lines():
            for line, stats in demonstrate_all(problems, args.mode, args.seed, config, args.workers,
                                               progress=not args.quiet, as_json=True):
                records.append(stats)
                yield line
        write_atomically(args.out, lines())
    except ValueError as error:
        print(f"search.py: error: {error}", file=sys.stderr)
        return 2
    stats = summarize(records)
    print(f"wrote {stats['problems']:,} {args.mode} demonstrations to {args.out}")
    print(f"solved {stats['solved']:.1%} | chars per sequence mean {stats['chars_mean']:,.0f} "
          f"median {stats['chars_median']:,.0f} max {stats['chars_max']:,} | "
          f"sequences per problem {stats['sequences_per_problem']:.2f}")
    if args.mode == "apr":
        print(f"spawned in {stats['problems_with_spawn']:.1%} of problems | spawns per problem "
              f"{stats['spawns_per_problem']:.2f} | children per spawn {stats['children_per_spawn']:.2f}")
    return 0


def _check_config(config: SearchConfig, args) -> None:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1 (got {args.workers})")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1 (got {args.limit})")
    if not 1 <= config.beam_min <= config.beam_max:
        raise ValueError(f"need 1 <= --beam-min <= --beam-max (got {config.beam_min}..{config.beam_max})")
    if config.child_beam_min < 0:
        raise ValueError(f"--child-beam-min must be at least 1, or 0 for the parent's beam "
                         f"(got {config.child_beam_min})")
    if config.child_beam_max < max(1, config.child_beam_min):
        raise ValueError(f"need --child-beam-min <= --child-beam-max (got {config.child_beam_min}.."
                         f"{config.child_beam_max})")
    if not 0.0 <= config.promising <= 1.0:
        raise ValueError(f"--promising must be a probability in [0, 1] (got {config.promising})")
    if config.min_spawn_children < 1 or config.depth < 0:
        raise ValueError("--min-spawn-children must be at least 1 and --depth non-negative")


if __name__ == "__main__":
    sys.exit(main())
