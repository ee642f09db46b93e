"""
The spawn/join inference engine: many rollouts decoded at once as rows of one KV cache.

    python rollout.py --ckpt out/sft_apr_tiny/ckpt.pt --target 27 --nums 2 6 3 5 [--html tree.html]

A rollout starts as one thread (the parent) holding the problem's prompt. Every engine step
decodes one token for every running thread in one batched forward pass. When a parent's text
ends with a spawn block, the engine builds each child's prompt with `search.child_prompt` (the
same text logic that wrote the training data), starts the children as new rows, and the parent
waits, holding its cache row but taking no steps. When all its children have ended, the parent's
row is truncated back to just before its spawn block, the join block (`search.join`) is
prefilled after it, and the parent resumes. Children's tokens never enter the parent's context.
Serial search (SoS+) is the same engine with spawning off.

Rows enter when a thread starts and leave when it ends (continuous batching); a group of samples
of one prompt is prefilled once and forked. Limits on context, children, spawn rounds, depth and
total tokens make any model, trained or not, end in bounded time; malformed spawn blocks end the
thread that wrote them, with the reason recorded, and never the batch.

Each thread records every LM call it made: the token ids and a mask (1 = sampled by the model,
0 = prompt or injected), which is what RL trains on.

Speed: the cache is read in place, segment by segment (`model.KVCache`), and a step touches only
the running threads. `Engine(reference=True)` reads the cache the obviously correct way; the tests
hold both to the same rollouts and `python bench.py --part apr` times them side by side.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch

import countdown
import model as M
import search
from tokenizer import Tokenizer


@dataclass
class Limits:
    """Bounds that keep a bad model from hanging or exhausting memory. None = the model's context."""
    context: int | None = None       # tokens one thread may hold
    max_children: int = 16           # children per spawn
    max_spawns: int = 8              # spawn rounds per rollout
    max_depth: int = 1               # levels of threads that may spawn (1: only the root, as in the paper)
    max_total_tokens: int = 200_000  # all tokens of a rollout's threads


@dataclass
class Thread:
    rollout: int
    parent: int | None               # index of the parent thread, None for a root
    level: int                       # 0 for a root, 1 for its children...
    tokens: list                     # the thread's current context, ids
    mask: list                       # 1 where the model sampled the token
    text: str                        # decoded tokens, for the spawn/join text logic
    offsets: list                    # text length after each token: where a token boundary falls
    pending: list                    # tokens not yet in the KV cache
    call_start: int = 0              # tokens before this index are context of the current call
    row: int | None = None
    status: str = "running"          # running, waiting (for children), done, failed
    reason: str = ""
    children: list = field(default_factory=list)   # thread indices of the current spawn
    spawns: list = field(default_factory=list)     # children per spawn, in order
    calls: list = field(default_factory=list)      # finished LM calls: (tokens, mask)
    fork_of: int | None = None       # a thread whose prefilled prompt this one copies
    prompt_logits: object = None     # logits after a root's prompt, for the samples that fork it
    last_logits: object = None       # logits a forked thread samples its first token from


def checkpoint_mode(state: dict, path: str) -> str:
    """"sosp" or "apr": which kind of model a checkpoint of train_sft.py or train_rl.py holds;
    ValueError naming the file when it does not say."""
    mode = state.get("args", {}).get("mode")
    if mode not in ("sosp", "apr"):
        raise ValueError(f"{path}: the checkpoint does not say whether it is a sosp or an apr model (args.mode)")
    return mode


def check_temperature(temperature: float) -> None:
    """ValueError unless `temperature` is a sampling temperature: 0 (greedy) or a finite positive number."""
    if not (temperature >= 0 and math.isfinite(temperature)):  # NaN fails every comparison
        raise ValueError(f"--temperature must be 0 (greedy) or a finite positive number (got {temperature})")


def check_rows(max_rows: int, parallel: bool) -> None:
    """ValueError unless the cache has rows enough to decode: an APR parent keeps its row while its
    children need theirs, so APR needs two."""
    fewest = 2 if parallel else 1
    if max_rows < fewest:
        raise ValueError(f"--max-rows {max_rows} is too few: {'APR' if parallel else 'serial search'} needs at "
                         f"least {fewest} cache row{'s' if fewest > 1 else ''}")


def sample(logits, temperature: float = 0.0, top_k: int | None = None, generator=None):
    """Next tokens (B,) from logits (B, V): argmax at temperature 0, else a draw from the
    temperature-scaled distribution, restricted to the top_k most likely tokens if set."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]


def tree_metrics(threads: list[dict]) -> dict:
    """The cost of one rollout from its thread tree: `threads` in depth-first
    order, each with its `parent` (index or None), `spawns` (children per spawn, in order) and
    `calls` (one (tokens, mask) per LM call; mask 1 on the tokens that call sampled).

    - total tokens: every token of every thread's contexts, a parent's prefix counted once: a
      call adds what it does not share with the call before it (the join block and what follows);
    - sequential tokens: the longest causal chain, a thread's sampled tokens plus, for each of its
      spawns, the largest sequential count among that spawn's children;
    - longest thread: the longest context any call held (what must fit a context window).
    """
    children = [[] for _ in threads]
    for k, t in enumerate(threads):
        if t["parent"] is not None:
            children[t["parent"]].append(k)

    def shared(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    def sequential(k):
        t, kids, done = threads[k], children[k], 0
        chain = sum(sum(mask) for _, mask in t["calls"])
        for size in t["spawns"]:
            group, done = kids[done:done + size], done + size
            chain += max((sequential(c) for c in group), default=0)
        return chain

    total = 0
    for t in threads:
        previous = []
        for tokens, _ in t["calls"]:
            total += len(tokens) - shared(previous, tokens)
            previous = tokens
    roots = [k for k, t in enumerate(threads) if t["parent"] is None]
    return {"total_tokens": total,
            "sequential_tokens": sum(sequential(k) for k in roots),
            "longest_thread": max((len(tokens) for t in threads for tokens, _ in t["calls"]), default=0),
            "spawns": sum(len(t["spawns"]) for t in threads),
            "children": sum(sum(t["spawns"]) for t in threads)}


class Engine:
    """Decodes rollouts of a model; `parallel=False` is serial search (SoS+)."""

    def __init__(self, model: M.GPT, tokenizer: Tokenizer, parallel: bool = True, limits: Limits | None = None,
                 max_rows: int = 64, reference: bool = False):
        """`reference=True` reads the KV cache the obviously correct way (`KVCache`), the path
        the fast one is tested against and `bench.py` measures it beside."""
        self.model, self.tok, self.parallel, self.reference = model, tokenizer, parallel, reference
        self.limits = limits or Limits()
        self.context = min(self.limits.context or model.config.context, model.config.context)
        check_rows(max_rows, parallel)
        self.max_rows = max_rows
        # threads that may spawn hold at most a third of the rows: a waiting parent's children need
        # three or four more, and with more parents children queue for rows (docs/experiments.md,
        # "The engine at its roofline"); at least one row always stays free for children
        self.parent_rows = max(1, max_rows // 3)
        self.device = next(model.parameters()).device
        # each token's text, decoded once: a thread's text grows by table lookups, not decode calls
        self.pieces = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
        for special in (tokenizer.bos_id, tokenizer.eos_id):
            self.pieces[special] = ""  # specials add no text
        # a marker can only be completed by a token whose text ends with the marker's last character
        last = {search.SPAWN_CLOSE[-1], search.JOIN_OPEN[-1]}
        self.may_end_marker = [p[-1:] in last for p in self.pieces]

    # -- thread bookkeeping ---------------------------------------------------------------------
    def _new_thread(self, rollout, parent, level, text, fork_of=None) -> Thread:
        ids = [self.tok.bos_id] + self.tok.encode(text)
        thread = Thread(rollout, parent, level, [], [], "", [], list(ids), fork_of=fork_of)
        for token in ids:
            self._append(thread, token, sampled=False)
        return thread

    def _append(self, thread: Thread, token: int, sampled: bool):
        thread.tokens.append(token)
        thread.mask.append(int(sampled))
        thread.text += self.pieces[token]
        thread.offsets.append(len(thread.text))

    def _close_call(self, thread: Thread):
        """Record the LM call that just ended: its context is 0 in the mask, what it sampled 1."""
        mask = [0] * thread.call_start + thread.mask[thread.call_start:]
        thread.calls.append((list(thread.tokens), mask))

    def _may_spawn(self, thread: Thread) -> bool:
        return self.parallel and thread.level < self.limits.max_depth

    # -- the loop -------------------------------------------------------------------------------
    @torch.inference_mode()  # no autograd bookkeeping on any tensor of a rollout
    def run(self, problems: list[dict], samples: int = 1, temperature: float = 0.0, top_k=None,
            seed: int = 0, budget: int | None = None) -> list[dict]:
        """Decode `samples` rollouts of each problem; one result per rollout, problem by problem."""
        check_temperature(temperature)
        self.model.eval()
        generator = torch.Generator().manual_seed(seed)
        mode = "apr" if self.parallel else "sosp"
        self.cache = M.KVCache(self.model.config, self.max_rows, self.context, device=self.device,
                               reference=self.reference)
        self.threads: list[Thread] = []
        for p, problem in enumerate(problems):
            prompt = search.condition_prefix(mode, budget) + search.root_prompt(problem["nums"], problem["target"],
                                                                               self.parallel)
            first = len(self.threads)
            for s in range(samples):  # samples after the first copy the first one's prefilled prompt
                self.threads.append(self._new_thread(p * samples + s, None, 0, prompt, None if s == 0 else first))
        n_roots = len(self.threads)
        self._totals, self._rounds = [0] * n_roots, [0] * n_roots  # tokens and spawn rounds per rollout
        self._started, self._latency = time.time(), [None] * n_roots
        # running threads without a cache row, in order of creation, and the rows of running threads
        self._unplaced, self._running_rows = list(range(n_roots)), {}
        self._holders = 0  # rows held by threads that may spawn
        while self._unplaced or self._running_rows:
            ready = self._admit()
            logits = self._forward(ready)
            tokens = sample(logits.float().cpu(), temperature, top_k, generator).tolist()
            for i, token in zip(ready, tokens):
                self._step(i, token)
        threads = self.threads
        children_of = {}
        for j, t in enumerate(threads):
            children_of.setdefault(t.parent, []).append(j)
        return [self._result(threads, r, problems[r // samples], self._latency[r], children_of)
                for r in range(n_roots)]

    def _admit(self) -> list[int]:
        """Give rows to running threads that have none, deepest first: children unblock waiting
        parents. A thread that may spawn (and then wait, holding its row) is admitted only while
        such threads hold fewer than `parent_rows`, so the cache can never fill with waiting
        parents and their children find rows. Returns the
        running threads in the order of their rows, which is how the cache reads them fastest."""
        threads = self.threads
        if self._unplaced:
            free = self.cache.in_use.count(False)
            placed = set()
            for i in sorted(self._unplaced, key=lambda i: -threads[i].level):
                t = threads[i]
                if free == 0:
                    break
                if self._may_spawn(t) and self._holders >= self.parent_rows:
                    continue
                source = threads[t.fork_of] if t.fork_of is not None else None
                if source is not None and source.status == "running" and source.prompt_logits is None:
                    continue  # wait until the source's prompt is in the cache, then copy it
                t.row = self.cache.allocate(1)[0]
                free -= 1
                self._holders += self._may_spawn(t)
                placed.add(i)
                self._running_rows[t.row] = i
                if source is not None and source.prompt_logits is not None and source.row is not None:
                    # exactly the prompt: the source's row may already hold tokens it decoded since
                    self.cache.fork(source.row, [t.row], length=len(t.pending))
                    t.pending, t.last_logits = [], source.prompt_logits
            self._unplaced = [i for i in self._unplaced if i not in placed]
        if not self._running_rows:
            raise RuntimeError("no KV cache row for any running thread; raise max_rows")
        return [self._running_rows[r] for r in sorted(self._running_rows)]

    def _forward(self, ready: list[int]):
        """Feed each thread's pending tokens (a prompt, a join block, or its last sampled token)
        and return the logits after its last one, (B, V). Decoding rows (one token) and prefilling
        rows run as separate passes so that one long prompt does not pad every decode row."""
        batch = [self.threads[i] for i in ready]
        decoding = [t for t in batch if len(t.pending) == 1]
        prefilling = [t for t in batch if len(t.pending) > 1]
        if len(decoding) == len(batch):  # the common step: every row feeds its last token
            return self._feed(decoding)
        out_of = {}
        for group in (decoding, *self._prefill_passes(prefilling)):
            if group:
                for t, logits in zip(group, self._feed(group)):
                    out_of[id(t)] = logits
        for t in batch:
            if id(t) not in out_of:  # a fork: its prompt's logits came from the row it copied
                out_of[id(t)], t.last_logits = t.last_logits, None
        return torch.stack([out_of[id(t)] for t in batch])

    def _prefill_passes(self, prefilling: list[Thread]) -> list[list[Thread]]:
        """The prefilling threads in passes whose right padding fits every row's cache (a pass
        writes its full width into each row): a row near the end of its window cannot take a
        long join block's padding, so it goes in a pass of its own."""
        if not prefilling:
            return []
        width = max(len(t.pending) for t in prefilling)
        fits, alone = [], []
        for t in prefilling:
            (fits if int(self.cache.lengths[t.row]) + width <= self.cache.max_len else alone).append(t)
        return [fits] + [[t] for t in alone]

    def _feed(self, group: list[Thread]):
        """One forward pass over the pending tokens of `group` (right-padded), logits (B, V)."""
        width = max(len(t.pending) for t in group)
        idx = torch.tensor([t.pending + [self.tok.pad_id] * (width - len(t.pending)) for t in group])
        with M.autocast(self.device):
            logits = self.model(idx.to(self.device), kv_cache=self.cache, rows=[t.row for t in group],
                                n_new=[len(t.pending) for t in group], last_only=True)
        for b, t in enumerate(group):
            if t.parent is None and not t.calls and len(t.pending) > 1:
                t.prompt_logits = logits[b]  # a root's prompt: samples of it fork from here
            t.pending = []
        return logits

    def _step(self, i, token):
        """Append a sampled token to thread i and act on what it completes."""
        t = self.threads[i]
        self._append(t, token, sampled=True)
        t.pending = [token]
        self._totals[t.rollout] += 1
        if token == self.tok.eos_id:
            return self._finish(i, "done")
        if len(t.tokens) >= self.context:
            return self._finish(i, "failed", "context limit")
        if self._totals[t.rollout] >= self.limits.max_total_tokens:
            return self._finish(i, "failed", "total token limit")
        # a spawn block is complete; a join block written by the model counts as its end
        if self.parallel and self.may_end_marker[token] and (t.text.endswith(search.SPAWN_CLOSE)
                                                             or t.text.endswith(search.JOIN_OPEN)):
            self._spawn(i)

    def _spawn(self, i):
        threads, t = self.threads, self.threads[i]
        try:
            if t.level >= self.limits.max_depth:
                raise search.SpawnError(f"a thread at level {t.level} may not spawn (depth limit {self.limits.max_depth})")
            if self._rounds[t.rollout] >= self.limits.max_spawns:
                raise search.SpawnError(f"more than {self.limits.max_spawns} spawn rounds in one rollout")
            _, _, ids = search.parse_spawn(t.text)
            if len(ids) > self.limits.max_children:
                raise search.SpawnError(f"{len(ids)} children, more than the limit of {self.limits.max_children}")
            prompts = [search.child_prompt(t.text, node_id) for node_id in ids]
        except search.SpawnError as error:
            return self._finish(i, "failed", f"spawn: {error}")
        self._rounds[t.rollout] += 1
        t.pending, t.status = [], "waiting"  # its last token enters the cache with the join block
        del self._running_rows[t.row]  # it keeps its row, but takes no steps
        self._close_call(t)
        t.spawns.append(len(prompts))
        t.children = []
        for prompt in prompts:
            t.children.append(len(threads))
            self._unplaced.append(len(threads))
            threads.append(self._new_thread(t.rollout, i, t.level + 1, prompt))

    def _finish(self, i, status, reason=""):
        threads, t = self.threads, self.threads[i]
        t.status, t.reason, t.pending = status, reason, []
        self._close_call(t)
        if t.row is not None:
            self._holders -= self._may_spawn(t)
            self._running_rows.pop(t.row, None)
            self.cache.free([t.row])
            t.row = None
        if t.parent is None:
            self._latency[t.rollout] = time.time() - self._started
        elif all(threads[c].status in ("done", "failed") for c in threads[t.parent].children):
            self._join(t.parent)

    def _join(self, p):
        """All children of thread p have ended: drop its spawn block, then feed the join block."""
        parent = self.threads[p]
        children = [self.threads[c] for c in parent.children]
        joined = search.join(parent.text, [c.text if c.status == "done" else None for c in children])
        before, _, _ = search.parse_spawn(parent.text)
        if len(before) not in parent.offsets:  # a spawn block that starts inside a token
            return self._finish(p, "failed", "spawn block does not start on a token boundary")
        keep = parent.offsets.index(len(before)) + 1
        while keep < len(parent.offsets) and parent.offsets[keep] == len(before):
            keep += 1  # keep zero-length tokens (BOS) that end at the same place
        # the spawn block's last token was sampled but never fed: the cache holds one token less
        self.cache.truncate(parent.row, min(keep, int(self.cache.lengths[parent.row])))
        del parent.tokens[keep:], parent.mask[keep:], parent.offsets[keep:]
        parent.text, parent.call_start = before, keep
        parent.pending = self.tok.encode(joined[len(before):])
        for token in parent.pending:
            self._append(parent, token, sampled=False)
        parent.status = "running"
        self._running_rows[parent.row] = p
        if len(parent.tokens) >= self.context:
            self._finish(p, "failed", "context limit at join")

    # -- results --------------------------------------------------------------------------------
    def _result(self, threads, root, problem, latency, children_of) -> dict:
        tree = self._subtree(threads, root, children_of)
        text = threads[root].text
        position = {id(t): k for k, t in enumerate(tree)}
        thread_dicts = [{"parent": None if t.parent is None else position[id(threads[t.parent])], "level": t.level,
                         "status": t.status, "reason": t.reason, "spawns": t.spawns, "text": t.text,
                         "calls": t.calls} for t in tree]
        return {"nums": problem["nums"], "target": problem["target"], "text": text,
                "answer": countdown.extract_answer(text),
                "correct": countdown.is_correct(problem["nums"], problem["target"], text),
                "status": threads[root].status, "reason": threads[root].reason,
                "threads": thread_dicts, **tree_metrics(thread_dicts), "latency": latency}

    @staticmethod
    def _subtree(threads, root, children_of):
        """The threads of one rollout, depth first, each before its children."""
        out, stack = [], [root]
        while stack:
            i = stack.pop()
            out.append(threads[i])
            stack.extend(reversed(children_of.get(i, [])))
        return out


# ---------------------------------------------------------------------------------------------
# The trace viewer

COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m"]  # by thread level
RESET, BOLD, RED, GREEN = "\033[0m", "\033[1m", "\033[31m", "\033[32m"


def _thread_label(result, k) -> str:
    thread = result["threads"][k]
    if thread["parent"] is None:
        return "parent"
    first_line = thread["text"].split("\n", 1)[0]  # "Moving to Node #id"
    return f"child at level {thread['level']} ({first_line.replace('Moving to ', '')})"


def render_tree(result: dict, colour: bool = True) -> str:
    """One rollout as an indented tree of threads: each thread's text, then its children's,
    and what each child returned (its summary path, or nothing)."""
    paint = (lambda code, s: f"{code}{s}{RESET}") if colour else (lambda code, s: s)
    lines = [paint(BOLD, f"{result['target']} from {result['nums']}: "
                         + (paint(GREEN, "correct") if result["correct"] else paint(RED, "not solved"))
                         + f" | {result['total_tokens']} tokens, {result['sequential_tokens']} sequential, "
                           f"{result['children']} children")]

    def visit(k, depth):
        thread = result["threads"][k]
        pad = "    " * depth
        status = thread["status"] + (f" ({thread['reason']})" if thread["reason"] else "")
        lines.append(paint(BOLD, f"{pad}== {_thread_label(result, k)}: {status}"))
        for text_line in thread["text"].rstrip("\n").split("\n"):
            lines.append(pad + "   " + paint(COLOURS[thread["level"] % len(COLOURS)], text_line))
        for child in [j for j, t in enumerate(result["threads"]) if t["parent"] == k]:
            visit(child, depth + 1)
            returned = search.child_result(result["threads"][child]["text"])
            lines.append(pad + "    " + (paint(GREEN, "-> returned its path to the goal") if returned
                                         else paint(RED, "-> returned no solution")))
    visit(0, 0)
    return "\n".join(lines)


def render_html(result: dict) -> str:
    """The same tree as a small self-contained page: nested, collapsible threads."""
    import html

    def visit(k):
        thread = result["threads"][k]
        children = [j for j, t in enumerate(result["threads"]) if t["parent"] == k]
        ok = search.child_result(thread["text"]) is not None
        colour = ["#e8f4fd", "#fdf6e3", "#f3e8fd"][thread["level"] % 3]
        body = "".join(visit(j) for j in children)
        return (f'<details open style="background:{colour};border-left:4px solid {"#2a2" if ok else "#c33"};'
                f'margin:6px;padding:6px"><summary><b>{html.escape(_thread_label(result, k))}</b> '
                f'({html.escape(thread["status"])}{": " + html.escape(thread["reason"]) if thread["reason"] else ""})'
                f'</summary><pre>{html.escape(thread["text"])}</pre>{body}</details>')
    verdict = "correct" if result["correct"] else "not solved"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>APR rollout</title></head>"
            f"<body style='font-family:sans-serif'><h3>{result['target']} from {result['nums']}: {verdict}</h3>"
            f"<p>{result['total_tokens']} tokens in all, {result['sequential_tokens']} sequential, "
            f"{result['children']} children</p>{visit(0)}</body></html>")


def main(argv=None) -> int:
    import argparse
    import sys
    parser = argparse.ArgumentParser(description="Decode one problem with a checkpoint and show the thread tree.")
    parser.add_argument("--ckpt", required=True, help="run folder or checkpoint of train_sft.py or train_rl.py")
    parser.add_argument("--target", type=int, required=True, help="the target number")
    parser.add_argument("--nums", type=int, nargs="+", required=True, help="the input numbers")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--budget", type=int, default=None, help="conditioning value, for models trained with it")
    parser.add_argument("--html", default=None, help="also write the tree as a self-contained HTML page")
    parser.add_argument("--no-colour", action="store_true", help="plain text")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu")
    args = parser.parse_args(argv)
    try:
        why = countdown.problem_error(args.nums, args.target)
        if why:
            raise ValueError(f"--nums {' '.join(map(str, args.nums))} --target {args.target}: {why}")
        check_temperature(args.temperature)
        if args.html and os.path.isdir(args.html):
            raise ValueError(f"--html {args.html} is a folder; give a file name, e.g. tree.html")
        model, tokenizer, state = M.load_checkpoint(args.ckpt, M.pick_device(args.device))
        mode = checkpoint_mode(state, args.ckpt)
        if args.budget is not None and not state["args"].get("conditioning"):
            raise ValueError(f"{args.ckpt} was trained without --conditioning, so it cannot follow --budget")
        engine = Engine(model, tokenizer, parallel=mode == "apr")
        result = engine.run([{"nums": args.nums, "target": args.target}], temperature=args.temperature,
                            seed=args.seed, budget=args.budget)[0]
        print(render_tree(result, colour=not args.no_colour and sys.stdout.isatty()))
        if args.html:
            countdown.write_atomically(args.html, [render_html(result)])
            print(f"wrote {args.html}")
    except (ValueError, OSError) as error:
        print(f"rollout.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
