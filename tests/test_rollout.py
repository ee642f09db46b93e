"""The spawn/join engine (rollout.py), first properties: scripted replay and naive equality."""

import pytest
import torch

import countdown
import model as M
import search
from rollout import Engine, Limits
from tokenizer import Tokenizer

TOK = Tokenizer()


class ScriptedModel(torch.nn.Module):
    """A stand-in for GPT whose next token is read from a script: {context ids: next id}. It
    rebuilds each cache row's context from what the engine feeds it, so it sees exactly what a
    real model would; an unscripted context gets EOS."""

    def __init__(self, script, context=4096):
        super().__init__()
        self.config = M.GPTConfig(vocab_size=TOK.vocab_size, n_layer=1, n_embd=8, n_head=1, mlp_hidden=8,
                                  context=context)
        self.script, self.rows = script, {}
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, kv_cache=None, rows=None, n_new=None, last_only=True, **_):
        out = torch.full((len(rows), TOK.vocab_size), -1e9)
        for b, row in enumerate(rows):
            start = int(kv_cache.lengths[row])
            context = self.rows.get(row, [])[:start] + idx[b, :n_new[b]].tolist()
            self.rows[row] = context
            kv_cache.lengths[row] = start + n_new[b]
            out[b, self.script.get(tuple(context), TOK.eos_id)] = 0.0
        return out


def random_gpt(context, seed=0, n_layer=2):
    """A small random GPT with the project's vocabulary, for decoding tests."""
    torch.manual_seed(seed)
    config = M.GPTConfig(vocab_size=TOK.vocab_size, n_layer=n_layer, n_embd=32, n_head=2, mlp_hidden=48,
                         context=context)
    return M.GPT(config).eval()


def script_of(records, mode):
    script = {}
    for r in records:
        trace = r["trace_dict"] if mode == "apr" else {"main_calls": [r["search_path"]], "sub_calls": []}
        for segments, ends in search.lm_calls(trace):
            ids, mask = TOK.render(segments, eos=ends)
            for j in range(1, len(ids)):
                if mask[j]:
                    script[tuple(ids[:j])] = ids[j]
    return script


@pytest.mark.parametrize("mode", ["apr", "sosp"])
def test_replaying_demonstrations_reproduces_their_sequences(mode):
    problems = list(countdown.generate_problems(12, seed=4))
    records = list(search.demonstrate_all(problems, mode))
    engine = Engine(ScriptedModel(script_of(records, mode)), TOK, parallel=(mode == "apr"), max_rows=24)
    results = engine.run(problems)
    for r, out in zip(records, results):
        assert out["text"] == r["search_path"]
        assert out["correct"] == r["solved"]
        expected = [TOK.render(seg, eos=ends) for seg, ends in search.lm_calls(
            r["trace_dict"] if mode == "apr" else {"main_calls": [r["search_path"]], "sub_calls": []})]
        produced = [[list(ids), list(mask)] for thread in out["threads"] for ids, mask in thread["calls"]]
        assert sorted(map(str, produced)) == sorted(str([ids, mask]) for ids, mask in expected)
        assert out["children"] == sum(r.get("spawns", []))


def naive_greedy(model, prompt_ids, steps, context):
    """The obviously correct decoder: recompute the whole sequence for every token."""
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(steps):
            if len(ids) >= context:
                break
            token = int(model(torch.tensor([ids]))[0, -1].argmax())
            ids.append(token)
            if token == TOK.eos_id:
                break
    return ids


def test_serial_engine_greedy_equals_naive_decoding():
    gpt = random_gpt(context=96)
    problems = list(countdown.generate_problems(5, seed=2))
    results = Engine(gpt, TOK, parallel=False, max_rows=4).run(problems)
    for problem, out in zip(problems, results):
        prompt = [TOK.bos_id] + TOK.encode(search.root_prompt(problem["nums"], problem["target"], False))
        expected = naive_greedy(gpt, prompt, 200, gpt.config.context)
        assert out["threads"][0]["calls"][-1][0] == expected


# ---------------------------------------------------------------------------------------------
# Malformed output and limits, with scripted threads

PROBLEM = {"nums": [2, 3, 4], "target": 10}
ROOT = search.root_prompt([2, 3, 4], 10, parallel=True)
EXPANSION = ("Exploring Operation: 2+3=5, Resulting Numbers: [4, 5]\n"
             "Generated Node #0,0: 10:[4, 5] Operation: 2+3=5\n"
             "Exploring Operation: 3*4=12, Resulting Numbers: [2, 12]\n"
             "Generated Node #0,1: 10:[2, 12] Operation: 3*4=12\n")
CHILD_0 = "Moving to Node #0,0\nCurrent State: 10:[4, 5], Operations: ['2+3=5']\n"
CHILD_1 = "Moving to Node #0,1\nCurrent State: 10:[2, 12], Operations: ['3*4=12']\n"


def script_texts(*threads):
    """A script from (context, written, ends with EOS) texts, one per LM call."""
    script = {}
    for context, written, ends in threads:
        ids, mask = TOK.render([(context, False), (written, True)], eos=ends)
        for j in range(1, len(ids)):
            if mask[j]:
                script[tuple(ids[:j])] = ids[j]
    return script


def run_scripted(script, problems=(PROBLEM,), **limits):
    engine = Engine(ScriptedModel(script), TOK, parallel=True, limits=Limits(**limits), max_rows=8)
    return engine.run(list(problems))


def spawn(*ids, level=1):
    return search.spawn_block(list(ids), level)


@pytest.mark.parametrize("written, reason", [
    (EXPANSION + spawn("0,0", "0,7"), "never generated"),
    (EXPANSION + search.SPAWN_OPEN + search.SPAWN_CLOSE, "empty spawn"),
    (EXPANSION + search.SPAWN_OPEN + "<Start Sub Search 1 at level 1> Moving to Node #0,0\n" + search.SPAWN_CLOSE,
     "expected 0"),
])
def test_malformed_spawn_blocks_fail_the_thread_with_a_reason(written, reason):
    out, = run_scripted(script_texts((ROOT, written, False)))
    assert out["status"] == "failed" and reason in out["reason"] and not out["correct"]


def test_a_join_block_written_by_the_model_is_treated_as_a_spawn():
    written = EXPANSION + search.SPAWN_OPEN + "<Start Sub Search 0 at level 1> Moving to Node #0,0\n" + search.JOIN_OPEN
    joined = ROOT + EXPANSION + search.join_block(1, ["0,0"], [None])
    script = script_texts((ROOT, written, False), (CHILD_0, "No solution found.\n", True),
                          (joined, "No solution found.\n", True))
    out, = run_scripted(script)
    assert out["status"] == "done" and out["children"] == 1
    assert out["text"] == joined + "No solution found.\n"
    parent = out["threads"][0]
    assert TOK.decode(parent["calls"][0][0][1:]) == ROOT + written  # the first call ends at the block


def test_eos_in_the_middle_of_a_line_ends_the_thread_unsolved():
    out, = run_scripted(script_texts((ROOT, "Exploring Operation: 2+3", True)))
    assert out["status"] == "done" and not out["correct"] and out["text"] == ROOT + "Exploring Operation: 2+3"


def test_every_limit_ends_its_thread_and_spares_the_rest_of_the_batch():
    good_problem = {"nums": [2, 3, 4], "target": 9}
    good_root = search.root_prompt([2, 3, 4], 9, parallel=True)
    good = ("Exploring Operation: 2+3=5, Resulting Numbers: [4, 5]\nGenerated Node #0,0: 9:[4, 5] Operation: 2+3=5\n"
            "Moving to Node #0,0\nCurrent State: 9:[4, 5], Operations: ['2+3=5']\n"
            "Exploring Operation: 4+5=9, Resulting Numbers: [9]\n9,9 equal: Goal Reached\n"
            "Moving to Node #0\nCurrent State: 9:[2, 3, 4], Operations: []\n"
            "Exploring Operation: 2+3=5, Resulting Numbers: [4, 5]\nGenerated Node #0,0: 9:[4, 5] Operation: 2+3=5\n"
            "Moving to Node #0,0\nCurrent State: 9:[4, 5], Operations: ['2+3=5']\n"
            "Exploring Operation: 4+5=9, Resulting Numbers: [9]\n9,9 equal: Goal Reached\n")
    two_children = EXPANSION + spawn("0,0", "0,1")
    endless = EXPANSION * 40
    cases = [  # (what the bad parent writes, limits, expected reason)
        (endless, {"context": 200}, "context limit"),
        (endless, {"max_total_tokens": 150}, "total token limit"),
        (two_children, {"max_children": 1}, "more than the limit"),
        (two_children, {"max_spawns": 0}, "spawn rounds"),
    ]
    for written, limits, reason in cases:
        script = script_texts((ROOT, written, False), (good_root, good, True))
        bad, fine = run_scripted(script, problems=(PROBLEM, good_problem), **limits)
        assert bad["status"] == "failed" and reason in bad["reason"], (limits, bad["reason"])
        assert fine["correct"] and fine["status"] == "done", limits


def test_a_child_that_spawns_beyond_the_depth_limit_fails_and_the_parent_goes_on():
    child_written = ("Exploring Operation: 4+5=9, Resulting Numbers: [9]\n9,10 unequal: No Solution\n"
                     + search.SPAWN_OPEN + "<Start Sub Search 0 at level 2> Moving to Node #0,0,0\n" + search.SPAWN_CLOSE)
    joined = ROOT + EXPANSION + search.join_block(1, ["0,0", "0,1"], [None, None])
    script = script_texts((ROOT, EXPANSION + spawn("0,0", "0,1"), False), (CHILD_0, child_written, False),
                          (CHILD_1, "No solution found.\n", True), (joined, "No solution found.\n", True))
    out, = run_scripted(script, max_depth=1)
    child = out["threads"][1]
    assert child["status"] == "failed" and "depth" in child["reason"]
    assert out["status"] == "done" and out["text"] == joined + "No solution found.\n"


def test_nested_spawns_replay_with_depth_two():
    problems = list(countdown.generate_problems(20, seed=9))
    config = search.SearchConfig(**{**search.DEFAULTS["apr"].__dict__, "depth": 2})
    records = list(search.demonstrate_all(problems, "apr", config=config))
    assert any(c["sub_calls"] for r in records for s in r["trace_dict"]["sub_calls"] for c in s)
    engine = Engine(ScriptedModel(script_of(records, "apr")), TOK, parallel=True,
                    limits=Limits(max_depth=2, max_spawns=16), max_rows=48)  # up to 11 rounds in all threads
    for r, out in zip(records, engine.run(problems)):
        assert out["text"] == r["search_path"] and out["correct"] == r["solved"]


def test_the_spawn_round_limit_counts_every_thread_of_a_rollout():
    """max_spawns bounds the spawn rounds of a whole rollout, not of each thread: with one round
    allowed and children that spawn again, the root's spawn runs and every child's is refused."""
    problems = list(countdown.generate_problems(20, seed=9))
    config = search.SearchConfig(**{**search.DEFAULTS["apr"].__dict__, "depth": 2})
    records = list(search.demonstrate_all(problems, "apr", config=config))
    engine = Engine(ScriptedModel(script_of(records, "apr")), TOK, parallel=True,
                    limits=Limits(max_depth=2, max_spawns=1), max_rows=48)
    results = engine.run(problems)
    assert all(sum(len(t["spawns"]) for t in r["threads"]) <= 1 for r in results)
    refused = [t for r in results for t in r["threads"] if "spawn rounds in one rollout" in t["reason"]]
    assert refused and all(t["level"] == 1 for t in refused)


def test_forked_samples_match_at_temperature_zero_and_differ_at_one():
    gpt = random_gpt(context=64)
    engine = Engine(gpt, TOK, parallel=False, max_rows=8)
    greedy = engine.run([PROBLEM], samples=3)
    assert greedy[0]["text"] == greedy[1]["text"] == greedy[2]["text"]
    hot = engine.run([PROBLEM], samples=3, temperature=1.0, seed=1)
    assert len({r["text"] for r in hot}) == 3
    again = engine.run([PROBLEM], samples=3, temperature=1.0, seed=1)
    assert [r["text"] for r in again] == [r["text"] for r in hot], "seeded sampling is reproducible"


@pytest.mark.parametrize("parallel, rows", [(False, 2), (True, 3)])
def test_samples_given_a_row_late_decode_as_they_would_alone(parallel, rows):
    """More samples than cache rows: a sample that gets its row only after its source has begun
    decoding must start from the source's prompt alone, not from what the source has written
    since. Greedy, so every sample of a problem must equal that problem decoded alone. Problems of
    different sizes reach the context limit at different times, so rows free up while other
    problems' sources are still decoding."""
    gpt = random_gpt(context=80)
    problems = [{"nums": [3, 5], "target": 15}, {"nums": [2, 3, 4, 5, 6, 7, 8], "target": 40},
                {"nums": [9, 11, 4], "target": 20}, {"nums": [1, 2, 3, 4, 5, 6], "target": 21}]
    alone = [Engine(gpt, TOK, parallel=parallel, max_rows=8).run([p])[0]["text"] for p in problems]
    crowded = Engine(gpt, TOK, parallel=parallel, max_rows=rows).run(problems, samples=3)
    assert [r["text"] for r in crowded] == [text for text in alone for _ in range(3)]


def test_trace_viewer_renders_every_thread(tmp_path):
    from rollout import render_html, render_tree
    problems = list(countdown.generate_problems(6, seed=4))
    records = list(search.demonstrate_all(problems, "apr"))
    engine = Engine(ScriptedModel(script_of(records, "apr")), TOK, parallel=True, max_rows=24)
    out = next(o for o in engine.run(problems) if o["children"])
    tree = render_tree(out, colour=False)
    assert tree.count("== child at level 1") == out["children"] and "== parent" in tree
    page = render_html(out)
    assert page.count("<details") == len(out["threads"]) and page.startswith("<!doctype html>")


class ForcedModel(torch.nn.Module):
    """A real random GPT whose output is overridden where a script says so (here: the parent's
    expansion and spawn block), in cached and in plain full-sequence mode alike."""

    def __init__(self, gpt, script):
        super().__init__()
        self.gpt, self.config, self.script, self.rows = gpt, gpt.config, script, {}

    def forward(self, idx, targets=None, kv_cache=None, rows=None, n_new=None, last_only=False, **kw):
        logits = self.gpt(idx, targets, kv_cache=kv_cache, rows=rows, n_new=n_new, last_only=last_only, **kw)
        if kv_cache is None:  # full pass over one sequence: override its last position
            forced = self.script.get(tuple(idx[0].tolist()))
            if forced is not None:
                logits[0, -1] = -1e9
                logits[0, -1, forced] = 0.0
            return logits
        for b, row in enumerate(rows):
            start = int(kv_cache.lengths[row]) - int(n_new[b] if n_new is not None else idx.shape[1])
            context = self.rows.get(row, [])[:start] + idx[b, :(n_new[b] if n_new is not None else idx.shape[1])].tolist()
            self.rows[row] = context
            forced = self.script.get(tuple(context))
            if forced is not None:
                logits[b] = -1e9
                logits[b, forced] = 0.0
        return logits


def naive_rollout(model, problem, context):
    """Spawn/join decoding by full recomputation, thread by thread: the obviously correct path.
    Returns every thread's final tokens, parent first, then children in order."""
    def text_of(ids):  # token by token, as the engine builds its text
        return "".join(TOK.decode([t]) for t in ids if t not in (TOK.bos_id, TOK.eos_id))

    def decode(ids):
        while True:
            with torch.no_grad():
                token = int(model(torch.tensor([ids]))[0, -1].argmax())
            ids.append(token)
            if token == TOK.eos_id:
                return "done"
            if len(ids) >= context:
                return "failed"
            if text_of(ids).endswith(search.SPAWN_CLOSE):
                return "spawn"

    parent = [TOK.bos_id] + TOK.encode(search.root_prompt(problem["nums"], problem["target"], True))
    threads = [parent]
    while decode(parent) == "spawn":
        text = text_of(parent)
        before, _, ids = search.parse_spawn(text)
        children = []
        for node_id in ids:
            child = [TOK.bos_id] + TOK.encode(search.child_prompt(text, node_id))
            children.append((child, decode(child)))
            threads.append(child)
        joined = search.join(text, [text_of(c) if status == "done" else None for c, status in children])
        offsets = [len(text_of(parent[:k + 1])) for k in range(len(parent))]
        del parent[offsets.index(len(before)) + 1:]  # keep the parent's own tokens before the block
        parent += TOK.encode(joined[len(before):])
        if len(parent) >= context:
            break
    return threads


def test_engine_with_spawns_equals_naive_decoding_on_a_random_model():
    gpt = random_gpt(context=160, seed=3)
    script = script_texts((ROOT, EXPANSION + spawn("0,0", "0,1"), False))
    engine_out, = Engine(ForcedModel(gpt, script), TOK, parallel=True, max_rows=4).run([PROBLEM])
    expected = naive_rollout(ForcedModel(gpt, script), PROBLEM, gpt.config.context)
    produced = [thread["calls"][-1][0] for thread in engine_out["threads"]]
    assert engine_out["children"] == 2 and len(produced) == len(expected) == 3
    for got, want in zip(produced, expected):
        assert got == want


def test_a_half_written_spawn_block_at_the_context_limit_fails_the_thread():
    half = EXPANSION + search.SPAWN_OPEN + "<Start Sub Search 0 at level 1> Moving to Node #0,0\n" + "Moving to Node #0\n" * 40
    prompt_tokens = len(TOK.encode(ROOT)) + 1
    limit = prompt_tokens + len(TOK.encode(EXPANSION + search.SPAWN_OPEN)) + 4  # cut inside the block
    out, = run_scripted(script_texts((ROOT, half, False)), context=limit)
    assert out["status"] == "failed" and out["reason"] == "context limit" and out["children"] == 0


def test_viewer_command_line_prints_the_tree_and_writes_html(tmp_path, capsys):
    import rollout
    ckpt = str(tmp_path / "ckpt.pt")
    M.save_checkpoint(ckpt, random_gpt(context=64, n_layer=1), TOK, args={"mode": "apr"})
    page = tmp_path / "tree.html"
    assert rollout.main(["--ckpt", ckpt, "--target", "27", "--nums", "22", "26", "31", "53", "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "27 from [22, 26, 31, 53]" in printed and "== parent" in printed
    assert page.read_text().startswith("<!doctype html>")
    assert rollout.main(["--ckpt", str(tmp_path / "none.pt"), "--target", "27", "--nums", "1", "2"]) == 2


# ---------------------------------------------------------------------------------------------
# The fast path against the reference path

def spawning_problems(n):
    """n problems of the tiny task, and a script that forces only each root's first LM call of its
    APR demonstration: the parent writes its expansion and spawn block, and everything after
    (children, the parent after its join) is the real model's own decoding. Problems whose
    demonstration spawns after a short first call (under 150 tokens), so that children and the
    parent after its join fit a small context."""
    game = countdown.GameConfig(count=4, num_min=1, num_max=10, target_min=10, target_max=30)
    problems = list(countdown.generate_problems(12 * n, seed=3, game=game))
    chosen, script = [], {}
    for problem, r in zip(problems, search.demonstrate_all(problems, "apr")):  # demonstrations are drawn: once
        segments, ends = next(search.lm_calls(r["trace_dict"]))
        ids, mask = TOK.render(segments, eos=ends)
        if ends or len(ids) >= 150 or len(chosen) == n:
            continue
        chosen.append(problem)
        for j in range(1, len(ids)):
            if mask[j]:
                script[tuple(ids[:j])] = ids[j]
    return chosen, script


def same_rollouts(a, b):
    """Every thread of every rollout the same: texts, statuses and each LM call's tokens and mask."""
    assert [[(t["text"], t["status"], t["calls"]) for t in r["threads"]] for r in a] == \
           [[(t["text"], t["status"], t["calls"]) for t in r["threads"]] for r in b]


@pytest.mark.parametrize("rows, samples", [(64, 1), (5, 1), (4, 2)])
def test_fast_path_equals_the_reference_with_spawns_forks_and_joins(rows, samples):
    """Greedy APR decoding of a real (random) model, several rollouts spawning in one batch: the
    cache read in place as blocks of rows gives exactly the reference path's rollouts. With few
    rows, threads wait for rows and take them as others free (ragged, scattered rows); with two
    samples each, the second forks the first's prompt."""
    problems, script = spawning_problems(3)
    model = ForcedModel(random_gpt(context=200, seed=5), script)
    fast = Engine(model, TOK, parallel=True, max_rows=rows).run(problems, samples=samples)
    model.rows.clear()
    reference = Engine(model, TOK, parallel=True, max_rows=rows, reference=True).run(problems, samples=samples)
    assert sum(r["children"] for r in fast) >= 8 and any(len(r["threads"][0]["calls"]) > 1 for r in fast)
    same_rollouts(fast, reference)


def test_fast_serial_decoding_equals_the_reference():
    gpt = random_gpt(context=120, seed=6)
    problems = list(countdown.generate_problems(6, seed=12))
    fast = Engine(gpt, TOK, parallel=False, max_rows=4).run(problems, samples=2)
    reference = Engine(gpt, TOK, parallel=False, max_rows=4, reference=True).run(problems, samples=2)
    same_rollouts(fast, reference)


def test_threads_that_may_spawn_hold_at_most_their_share_of_rows(monkeypatch):
    """More rollouts than rows: at every step the rows held by threads that may spawn (running or
    waiting roots) are at most `parent_rows`, the engine's running count of them equals a scan of
    every thread, and the replayed demonstrations still come out whole."""
    problems = list(countdown.generate_problems(12, seed=4))
    records = list(search.demonstrate_all(problems, "apr"))
    engine = Engine(ScriptedModel(script_of(records, "apr")), TOK, parallel=True, max_rows=9)
    real_admit, seen = Engine._admit, []

    def checked_admit(self):
        ready = real_admit(self)
        held = sum(1 for t in self.threads if t.row is not None and self._may_spawn(t))
        assert held == self._holders <= self.parent_rows == 3
        seen.append(held)
        return ready
    monkeypatch.setattr(Engine, "_admit", checked_admit)
    for r, out in zip(records, engine.run(problems)):
        assert out["text"] == r["search_path"]
    assert max(seen) == 3


def test_prefill_passes_never_pad_a_row_past_the_end_of_its_cache():
    """A pass writes its full width into every row it feeds, so a row near the end of its window
    must not share a pass with a long join block: it is fed in a pass of its own, the others stay
    together, and every prefilling thread is fed exactly once."""
    from types import SimpleNamespace
    gpt = random_gpt(context=48)
    engine = Engine(gpt, TOK, parallel=True, max_rows=3)
    engine.cache = M.KVCache(gpt.config, 3, 48)
    rows = engine.cache.allocate(3)
    engine.cache.lengths[rows] = torch.tensor([40, 0, 10])
    near_end, long_join, short = (SimpleNamespace(row=r, pending=[1] * n) for r, n in zip(rows, (3, 20, 5)))
    passes = engine._prefill_passes([near_end, long_join, short])
    assert [[id(t) for t in p] for p in passes] == [[id(long_join), id(short)], [id(near_end)]]
    for group in passes:
        width = max(len(t.pending) for t in group)
        assert all(int(engine.cache.lengths[t.row]) + width <= 48 for t in group)
