"""The symbolic solvers and the spawn/join text logic (search.py)."""

import itertools
import json
import multiprocessing
import re
import signal
import sys
from dataclasses import replace

import pytest

import countdown
import search
from search import SearchConfig, SpawnError

# ---------------------------------------------------------------------------------------------
# Exact lines on a hand-checked example

# DFS on [2, 3, 4] -> 10 with the multiply heuristic, derived by hand, not by running the code.
# Factors of 10 are 2, 5, 10; distance d(v) to the nearest: d(1)=1 d(2)=0 d(3)=1 d(4)=1 d(5)=0
# d(6)=1 d(7)=2 d(8)=2 d(9)=1, and v-10 from 10 up. Root successors, h = sum of d:
#   2+3=5 [4,5] 1 | 2*3=6 [4,6] 2 | 3-2=1 [4,1] 2 | 2+4=6 [3,6] 2 | 2*4=8 [3,8] 3 | 4-2=2 [3,2] 1
#   4/2=2 [3,2] 1 | 3+4=7 [2,7] 2 | 3*4=12 [2,12] 2 | 4-3=1 [2,1] 1
# Stable sort by h visits 2+3, 4-2, 4/2, 4-3 (h 1), then 2*3 (h 2), where 4+6=10 wins.
# Leaves of [4,5]: 9 (d 1), 20 (d 10, not above the prune threshold 10), 1 (d 1) -> 9, 1, 20.
# Leaves of [3,2]: 5 (0), 6 (1), 1 (1). Of [2,1]: 3 (1), 2 (0), 1 (1), 2/1=2 (0) -> 2*1, 2/1, 2+1, 2-1.
# Leaves of [4,6]: 10 (0), 24 (14, pruned), 2 (0) -> 4+6 first, which is the goal.
def _back(node, nums, ops):
    return f"Moving to Node #{node}\nCurrent State: 10:{nums}, Operations: {ops}\n"


def _leaf(op, value, last=False):
    return f"Exploring Operation: {op}, Resulting Numbers: [{value}]\n{value},10 unequal: No Solution\n"


DFS_2_3_4_TO_10 = (
    "Current State: 10:[2, 3, 4], Operations: []\n"
    "Exploring Operation: 2+3=5, Resulting Numbers: [4, 5]\n"
    "Generated Node #0,0: 10:[4, 5] Operation: 2+3=5\n"
    "Moving to Node #0,0\n"
    "Current State: 10:[4, 5], Operations: ['2+3=5']\n"
    + _leaf("4+5=9", 9) + _back("0,0", [4, 5], ['2+3=5'])
    + _leaf("5-4=1", 1) + _back("0,0", [4, 5], ['2+3=5'])
    + _leaf("4*5=20", 20)
    + _back("0", [2, 3, 4], [])
    + "Exploring Operation: 4-2=2, Resulting Numbers: [3, 2]\n"
    "Generated Node #0,1: 10:[3, 2] Operation: 4-2=2\n"
    "Moving to Node #0,1\n"
    "Current State: 10:[3, 2], Operations: ['4-2=2']\n"
    + _leaf("3+2=5", 5) + _back("0,1", [3, 2], ['4-2=2'])
    + _leaf("3*2=6", 6) + _back("0,1", [3, 2], ['4-2=2'])
    + _leaf("3-2=1", 1)
    + _back("0", [2, 3, 4], [])
    + "Exploring Operation: 4/2=2, Resulting Numbers: [3, 2]\n"
    "Generated Node #0,2: 10:[3, 2] Operation: 4/2=2\n"
    "Moving to Node #0,2\n"
    "Current State: 10:[3, 2], Operations: ['4/2=2']\n"
    + _leaf("3+2=5", 5) + _back("0,2", [3, 2], ['4/2=2'])
    + _leaf("3*2=6", 6) + _back("0,2", [3, 2], ['4/2=2'])
    + _leaf("3-2=1", 1)
    + _back("0", [2, 3, 4], [])
    + "Exploring Operation: 4-3=1, Resulting Numbers: [2, 1]\n"
    "Generated Node #0,3: 10:[2, 1] Operation: 4-3=1\n"
    "Moving to Node #0,3\n"
    "Current State: 10:[2, 1], Operations: ['4-3=1']\n"
    + _leaf("2*1=2", 2) + _back("0,3", [2, 1], ['4-3=1'])
    + _leaf("2/1=2", 2) + _back("0,3", [2, 1], ['4-3=1'])
    + _leaf("2+1=3", 3) + _back("0,3", [2, 1], ['4-3=1'])
    + _leaf("2-1=1", 1)
    + _back("0", [2, 3, 4], [])
    + "Exploring Operation: 2*3=6, Resulting Numbers: [4, 6]\n"
    "Generated Node #0,4: 10:[4, 6] Operation: 2*3=6\n"
    "Moving to Node #0,4\n"
    "Current State: 10:[4, 6], Operations: ['2*3=6']\n"
    "Exploring Operation: 4+6=10, Resulting Numbers: [10]\n"
    "10,10 equal: Goal Reached\n"
    # the summary path
    "Moving to Node #0\n"
    "Current State: 10:[2, 3, 4], Operations: []\n"
    "Exploring Operation: 2*3=6, Resulting Numbers: [4, 6]\n"
    "Generated Node #0,4: 10:[4, 6] Operation: 2*3=6\n"
    "Moving to Node #0,4\n"
    "Current State: 10:[4, 6], Operations: ['2*3=6']\n"
    "Exploring Operation: 4+6=10, Resulting Numbers: [10]\n"
    "10,10 equal: Goal Reached\n"
)


def test_dfs_writes_the_hand_checked_trace():
    record = search.demonstrate({"nums": [2, 3, 4], "target": 10}, 0, "dfs", 0, SearchConfig(heuristic="mult"))
    assert record["search_path"] == DFS_2_3_4_TO_10
    assert record["solved"] and countdown.is_correct([2, 3, 4], 10, record["search_path"])


def test_multiply_heuristic_matches_its_definition():
    h = search.mult_heuristic(10)  # factors 2, 5, 10
    assert [h([v]) for v in range(13)] == [2, 1, 0, 1, 1, 0, 1, 2, 2, 1, 0, 1, 2]
    assert h([4, 6, 12]) == 1 + 1 + 2
    assert search.sum_heuristic(10)([4, 13]) == (6 + 3) / 2


# ---------------------------------------------------------------------------------------------
# The spawn/join text, by hand

PARENT = (
    "Moving to Node #0\n"
    "Current State: 27:[22, 26, 31, 53], Operations: []\n"
    "Exploring Operation: 53-22=31, Resulting Numbers: [26, 31, 31]\n"
    "Generated Node #0,0: 27:[26, 31, 31] Operation: 53-22=31\n"
    "Exploring Operation: 26+31=57, Resulting Numbers: [22, 53, 57]\n"
    "Generated Node #0,1: 27:[22, 53, 57] Operation: 26+31=57\n"
    "<Calling Sub Searches>\n"
    "<Start Sub Search 0 at level 1> Moving to Node #0,0\n"
    "<Start Sub Search 1 at level 1> Moving to Node #0,1\n"
    "<End Calling Sub Searches>\n"
)
CHILD_0 = (
    "Moving to Node #0,0\n"
    "Current State: 27:[26, 31, 31], Operations: ['53-22=31']\n"
    "Exploring Operation: 31/31=1, Resulting Numbers: [26, 1]\n"
    "Generated Node #0,0,0: 27:[26, 1] Operation: 31/31=1\n"
    "Moving to Node #0,0,0\n"
    "Current State: 27:[26, 1], Operations: ['53-22=31', '31/31=1']\n"
    "Exploring Operation: 26+1=27, Resulting Numbers: [27]\n"
    "27,27 equal: Goal Reached\n"
)
CHILD_0_SUMMARY = (
    "Moving to Node #0,0\n"
    "Current State: 27:[26, 31, 31], Operations: ['53-22=31']\n"
    "Exploring Operation: 31/31=1, Resulting Numbers: [26, 1]\n"
    "Generated Node #0,0,0: 27:[26, 1] Operation: 31/31=1\n"
    "Moving to Node #0,0,0\n"
    "Current State: 27:[26, 1], Operations: ['53-22=31', '31/31=1']\n"
    "Exploring Operation: 26+1=27, Resulting Numbers: [27]\n"
    "27,27 equal: Goal Reached\n"
)


def test_child_prompts_are_rebuilt_from_the_parent_text():
    assert search.child_prompt(PARENT, "0,1") == (
        "Moving to Node #0,1\nCurrent State: 27:[22, 53, 57], Operations: ['26+31=57']\n")
    assert search.parse_spawn(PARENT) == (PARENT[:PARENT.index("<Calling")], 1, ["0,0", "0,1"])


def test_join_returns_summaries_of_successful_children_only():
    joined = search.join(PARENT, [CHILD_0 + CHILD_0_SUMMARY, "Moving to Node #0,1\nNo solution found.\n"])
    assert joined == (
        PARENT[:PARENT.index("<Calling")] + "<Sub Searches>\n"
        "<Goal Reached in Sub Search 0 at level 1 at Node #0,0>\n" + CHILD_0_SUMMARY
        + "<No Solution in Sub Search 1 at level 1 at Node #0,1>\n<End Sub Searches>\n")
    # a child cut off after its first Goal Reached, or that failed, returns nothing
    assert search.child_result(CHILD_0) is None
    assert search.child_result(None) is None


@pytest.mark.parametrize("text, reason", [
    (PARENT.replace("#0,1\n<End", "#0,7\n<End"), "never generated"),
    (PARENT[:PARENT.index("<Start")] + "<End Calling Sub Searches>\n", "empty spawn"),
    (PARENT.replace("Sub Search 1 at", "Sub Search 2 at"), "expected 1"),
    (PARENT.replace("Sub Search 1 at level 1", "Sub Search 1 at level 2"), "several levels"),
    (PARENT.replace("<Start Sub Search 1 at level 1> ", "<Start Sub Search 1 at level 1"), "unreadable"),
    ("Moving to Node #0\n", "no <Calling"),
])
def test_malformed_spawns_raise_with_a_reason(text, reason):
    with pytest.raises(SpawnError, match=reason):
        _, _, ids = search.parse_spawn(text)
        for node_id in ids:
            search.child_prompt(text, node_id)


def test_a_join_block_written_by_the_model_ends_the_spawn_block():
    half = PARENT.replace("<End Calling Sub Searches>\n", "<Sub Searches>\n")
    assert search.parse_spawn(half)[2] == ["0,0", "0,1"]


# ---------------------------------------------------------------------------------------------
# Properties over many demonstrations

@pytest.fixture(scope="module")
def problems():
    return list(countdown.generate_problems(300, seed=11, split="train"))


@pytest.mark.parametrize("mode", ["dfs", "bfs", "sosp", "apr"])
def test_every_trace_marked_solved_is_correct(problems, mode):
    records = list(search.demonstrate_all(problems, mode))
    assert any(r["solved"] for r in records) and not all(r["solved"] for r in records)
    for r in records:
        assert countdown.is_correct(r["nums"], r["target"], r["search_path"]) == r["solved"]


def _check_round_trip(trace_dict):
    """For every spawn k of a thread: the text logic turns call k and the children's final texts
    into each child's prompt and into the start of call k+1, exactly."""
    calls = trace_dict["main_calls"]
    assert len(calls) == len(trace_dict["sub_calls"]) + 1
    for k, children in enumerate(trace_dict["sub_calls"]):
        _, _, ids = search.parse_spawn(calls[k])
        assert len(ids) == len(children)
        for node_id, child in zip(ids, children):
            prompt = search.child_prompt(calls[k], node_id)
            assert child["main_calls"][0].startswith(prompt)
            assert prompt.count("\n") == 2
            _check_round_trip(child)
        joined = search.join(calls[k], [child["main_calls"][-1] for child in children])
        assert calls[k + 1].startswith(joined)
        assert joined.endswith(search.JOIN_CLOSE)


@pytest.mark.parametrize("depth", [1, 2])
def test_apr_demonstrations_round_trip_through_the_spawn_join_logic(problems, depth):
    config = SearchConfig(**{**search.DEFAULTS["apr"].__dict__, "depth": depth})
    records = list(search.demonstrate_all(problems, "apr", config=config))
    assert sum(len(r["spawns"]) for r in records) > len(records) // 2
    if depth == 2:  # nested spawning really happens
        assert any(child["sub_calls"] for r in records for spawn in r["trace_dict"]["sub_calls"]
                   for child in spawn)
    for r in records:
        _check_round_trip(r["trace_dict"])
        assert r["sequences"] == len(search.thread_texts(r["trace_dict"]))


def test_every_moving_line_names_the_node_expanded_next(problems):
    """The authors' APR solver often skipped or misnamed `Moving to Node` after a failed join.
    In ours, every `Current State` line of every thread follows a line that moves to that node,
    and that node's numbers are the ones the state shows."""
    moving = re.compile(r"Moving to Node #(\d+(?:,\d+)*)$")
    generated = re.compile(r"Generated Node #(\S+): \d+:(\[[\d, ]*\])")
    for r in search.demonstrate_all(problems, "apr"):
        for text in search.thread_texts(r["trace_dict"]):
            lines = text.split("\n")
            nums_of = {"0": str(r["nums"])}
            for line in lines:
                if m := generated.match(line):
                    nums_of[m[1]] = m[2]
            for before, line in zip(lines, lines[1:]):
                if line.startswith("Current State"):
                    m = moving.search(before)
                    assert m, (before, line)
                    if m[1] in nums_of:  # a child's own start node is known from its prompt line
                        assert line.split(":", 2)[2].startswith(nums_of[m[1]])


def test_solver_statistics_are_near_the_authors(problems):
    """The authors' solvers: ~51% SoS+, ~70% APR, 6.2 children per spawn, 8.6 sequences per
    problem. 300 problems leave a few points of sampling noise, hence the wide bounds here; the
    2,000-problem figures are in docs/experiments.md."""
    sosp = search.summarize(list(search.demonstrate_all(problems, "sosp")))
    apr = search.summarize(list(search.demonstrate_all(problems, "apr")))
    assert 0.42 < sosp["solved"] < 0.60
    assert 0.62 < apr["solved"] < 0.78
    assert 5.2 < apr["children_per_spawn"] < 7.2
    assert 7.0 < apr["sequences_per_problem"] < 10.0


def test_settings_change_the_search(problems):
    wide = SearchConfig(beam_min=4, beam_max=4, promising=0.0)
    records = [search.demonstrate(p, i, "sosp", 0, wide) for i, p in enumerate(problems[:50])]
    assert all(r["beam_size"] == 4 and "Sub Search" not in r["search_path"] for r in records)
    never = SearchConfig(**{**search.DEFAULTS["apr"].__dict__, "promising": 0.0})
    assert all(r["sequences"] == 1 for r in search.demonstrate_all(problems[:50], "apr", config=never))


def test_a_fixed_child_beam_bounds_every_child_expansion(problems):
    """child_beam_min = child_beam_max = c fixes the children's beam, below or above the parent's:
    the record says c, and no expansion in a child keeps more than c successors (the authors'
    default draws it from the parent's beam up, so a child beam of 2 under a parent beam of 4
    exists only through this setting)."""
    for parent, child in ((4, 2), (2, 4)):
        config = replace(search.DEFAULTS["apr"], beam_min=parent, beam_max=parent,
                         child_beam_min=child, child_beam_max=child)
        records = [search.demonstrate(p, i, "apr", 0, config) for i, p in enumerate(problems[:60])]
        assert all(r["child_beam_size"] == child for r in records)
        kept = []
        for r in records:
            for spawn in r["trace_dict"]["sub_calls"]:
                for child_trace in spawn:
                    text = child_trace["main_calls"][-1]
                    kept += [block.count("Exploring Operation") for block in text.split("Current State")[1:]]
        assert kept and max(kept) == child  # bounded by the child beam, and reached


# ---------------------------------------------------------------------------------------------
# The command line

def _write_problems(path, n=120, seed=0):
    countdown.main(["--n", str(n), "--seed", str(seed), "--out", str(path), "--quiet"])


def test_cli_output_is_identical_for_one_and_two_workers(tmp_path, capsys):
    problems = tmp_path / "p.jsonl"
    _write_problems(problems, n=200)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"apr{workers}.jsonl"
        assert search.main(["--mode", "apr", "--problems", str(problems), "--out", str(out),
                            "--workers", str(workers), "--quiet"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    summary = capsys.readouterr().out
    assert "solved" in summary and "children per spawn" in summary
    record = json.loads(outs[0].splitlines()[0])
    for field in ("nums", "target", "search_path", "trace_dict", "solved", "sequences", "chars"):
        assert field in record
    assert set(record["trace_dict"]) == {"main_calls", "sub_calls"}


def test_workers_die_on_sigterm_whatever_handler_the_parent_set():
    """A worker that inherited a SIGTERM handler exiting through Python could outlive being
    terminated and hang its parent, so workers take the default back."""
    before = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pool = countdown.worker_pool(2)
    try:
        assert pool.submit(signal.getsignal, signal.SIGTERM).result() == signal.SIG_DFL
    finally:
        pool.shutdown()
        signal.signal(signal.SIGTERM, before)


def test_a_consumer_that_stops_early_leaves_no_worker_behind():
    """Stopping early cancels the chunks not started and waits for the running ones, many times
    over: killing workers mid-write once hung the parent on half a result in the pipe."""
    problems = [{"nums": [2, 3, 5, 7], "target": 24}] * 200
    for _ in range(20):
        demos = search.demonstrate_all(problems, "sosp", workers=2, chunk=8)
        assert "search_path" in next(demos)
        demos.close()  # the generator's finally shuts the workers down
        assert not multiprocessing.active_children()


def test_parallel_map_keeps_order_and_reads_an_endless_iterable():
    """Results come back in the jobs' order for any number of workers, and an endless iterable of
    jobs is read at most two jobs per worker ahead of the consumer."""
    for workers in (1, 2):
        read = []

        def jobs():
            for i in itertools.count():
                read.append(i)
                yield -i
        results = countdown.parallel_map(abs, jobs(), workers)
        assert list(itertools.islice(results, 50)) == list(range(50))
        assert len(read) <= 50 + 2 * workers
        results.close()
        assert not multiprocessing.active_children()


@pytest.mark.parametrize("content, args, message", [
    (None, [], "does not exist"),
    ("{broken\n", [], "p.jsonl:1"),
    ('{"nums": [1, 2]}\n', [], "p.jsonl:1"),
    ('{"nums": "12", "target": 3}\n', [], "p.jsonl:1"),
    ("", ["--beam-min", "6", "--beam-max", "2"], "--beam-min"),
    ("", ["--promising", "1.5"], "--promising"),
    ("", ["--limit", "-1"], "--limit"),
    ("", ["--child-beam-min", "-1"], "--child-beam-min"),
    ("", ["--child-beam-min", "9", "--child-beam-max", "3"], "--child-beam-min <= --child-beam-max"),
    ("", ["--limit", "0"], "--limit must be at least 1"),
    # a search of 20 numbers would write gigabytes: refused where the problem is read
    ('{"nums": [%s], "target": 50}\n' % ", ".join(["7"] * 20), [], "p.jsonl:1: not a problem: a problem has 2 to 5"),
    ('{"nums": [2, true], "target": 2}\n', [], "p.jsonl:1: not a problem: its numbers must be integers"),
    ('{"nums": [2, 3], "target": 123456789012345678901}\n', [], "its target must be an integer in 2..10000"),
    ('{"nums": [-4, 3], "target": 12}\n', [], "its numbers must be integers in 0..10000"),
])
def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, capsys, content, args, message):
    problems = tmp_path / "p.jsonl"
    if content is not None:
        problems.write_text(content)
    out = tmp_path / "out.jsonl"
    assert search.main(["--mode", "sosp", "--problems", str(problems), "--out", str(out), "--quiet"] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_lm_calls_split_injected_from_written_text(problems):
    """Each LM call's written part is exactly what a thread adds after its context; contexts
    are the prompt, or the previous call up to its spawn block plus the join block."""
    for r in search.demonstrate_all(problems[:100], "apr"):
        td = r["trace_dict"]
        calls = list(search.lm_calls(td, prefix="Sub Call Budget: 5 "))
        assert len(calls) == r["sequences"]
        (first, first_ends), *_ = calls
        assert first[0] == ("Sub Call Budget: 5 ", False)
        assert first[1] == (search.root_prompt(r["nums"], r["target"], parallel=True), False)
        for k, (segments, ends) in enumerate(calls[:len(td["main_calls"])]):
            text = "".join(t for t, _ in segments[1:])
            assert text == td["main_calls"][k]
            assert ends == (k == len(td["main_calls"]) - 1)
            if k > 0:
                assert segments[1][0].endswith(search.JOIN_CLOSE)
            if not ends:
                assert segments[2][0].endswith(search.SPAWN_CLOSE)
        for segments, ends in calls[len(td["main_calls"]):]:  # children: prompt of two lines
            assert segments[0] == ("", False) and segments[1][0].count("\n") == 2
