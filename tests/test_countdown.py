"""The game, problem generation and the strict verifier (countdown.py)."""

import itertools
import json
import os
import random

import pytest

import countdown
from countdown import GameConfig, check_solution, extract_answer, is_correct

# A correct trace for [22, 26, 31, 53] -> 27 (the paper's Figure 3 problem), written by hand:
# 53-22=31, then 31/31=1, then 26+1=27. Search text first, then the summary path.
SOLVED = """Current State: 27:[22, 26, 31, 53], Operations: []
Exploring Operation: 53-22=31, Resulting Numbers: [26, 31, 31]
Generated Node #0,0: 27:[26, 31, 31] Operation: 53-22=31
Moving to Node #0,0
Current State: 27:[26, 31, 31], Operations: ['53-22=31']
Exploring Operation: 31/31=1, Resulting Numbers: [26, 1]
Generated Node #0,0,0: 27:[26, 1] Operation: 31/31=1
Moving to Node #0,0,0
Current State: 27:[26, 1], Operations: ['53-22=31', '31/31=1']
Exploring Operation: 26+1=27, Resulting Numbers: [27]
27,27 equal: Goal Reached
Moving to Node #0
Current State: 27:[22, 26, 31, 53], Operations: []
Exploring Operation: 53-22=31, Resulting Numbers: [26, 31, 31]
Generated Node #0,0: 27:[26, 31, 31] Operation: 53-22=31
Moving to Node #0,0
Current State: 27:[26, 31, 31], Operations: ['53-22=31']
Exploring Operation: 31/31=1, Resulting Numbers: [26, 1]
Generated Node #0,0,0: 27:[26, 1] Operation: 31/31=1
Moving to Node #0,0,0
Current State: 27:[26, 1], Operations: ['53-22=31', '31/31=1']
Exploring Operation: 26+1=27, Resulting Numbers: [27]
27,27 equal: Goal Reached
"""
NUMS, TARGET = [22, 26, 31, 53], 27


def path(*steps, goal=27):
    """A summary path from (operation, resulting numbers) pairs, ending in the goal line."""
    lines = [f"Exploring Operation: {op}, Resulting Numbers: {nums}" for op, nums in steps]
    return "\n" + "\n".join(lines) + f"\n{goal},27 equal: Goal Reached\n"


def test_correct_trace_is_accepted():
    assert is_correct(NUMS, TARGET, SOLVED)
    assert check_solution(NUMS, TARGET, path(("53-22=31", [26, 31, 31]), ("31/31=1", [26, 1]),
                                              ("26+1=27", [27])))


def test_answer_is_text_after_second_to_last_goal():
    assert extract_answer(SOLVED) == SOLVED[SOLVED.index("Goal Reached") + len("Goal Reached"):]
    assert extract_answer("a Goal Reached b Goal Reached c Goal Reached d") == " c Goal Reached d"


@pytest.mark.parametrize("name, answer", [
    # 31 is used twice, but the inputs hold only one 31 before 53-22 makes another: reuse
    ("reused number", path(("31/31=1", [22, 26, 53, 1]), ("53-22=31", [26, 1, 31]), ("26+1=27", [27]))),
    ("number never given", path(("53-22=31", [26, 31, 31]), ("31/31=1", [26, 1]), ("25+2=27", [27]))),
    ("inexact division", path(("53/22=2", [26, 31, 2]), ("26+2=28", [31, 28]), ("31-4=27", [27]))),
    ("negative result", path(("22-53=-31", [26, 31, -31]))),
    ("smaller minus larger", path(("22-53=0", [26, 31, 0]))),
    ("wrong arithmetic", path(("53-22=30", [26, 31, 30]), ("31/31=1", [26, 1]), ("26+1=27", [27]))),
    ("wrong resulting list", path(("53-22=31", [26, 31, 30]), ("31/31=1", [26, 1]), ("26+1=27", [27]))),
    ("resulting list drops a number", path(("53-22=31", [31, 31]), ("31/31=1", [1]), ("26+1=27", [27]))),
    ("numbers left over", path(("53-22=31", [26, 31, 31]), ("31/31=1", [26, 1]), ("26+1=27", [27, 99]))),
    ("skipped number: 26 never used", path(("53-22=31", [26, 31, 31]), ("31-31=0", [26, 0]))),
    ("goal line names another number", path(("53-22=31", [26, 31, 31]), ("31/31=1", [26, 1]),
                                            ("26+1=27", [27]), goal=28)),
    ("no steps at all", "\n27,27 equal: Goal Reached\n"),
    ("unreadable step", path(("53 - 22 = 31", [26, 31, 31]))),
    ("leading zeros", path(("053-022=031", [26, 31, 31]), ("31/31=1", [26, 1]), ("26+1=27", [27]))),
    ("full-width digits", path(("\uff15\uff13-22=31", [26, 31, 31]), ("31/31=1", [26, 1]), ("26+1=27", [27]))),
    ("Arabic-Indic digits", path(("\u0665\u0663-22=31", [26, 31, 31]), ("31/31=1", [26, 1]),
                                 ("26+1=27", [27]))),
])
def test_wrong_paths_are_rejected(name, answer):
    assert not check_solution(NUMS, TARGET, answer), name


def test_arithmetic_slips_count_every_miscalculated_step_answer_or_not():
    text = ("Exploring Operation: 9+11=20, Resulting Numbers: [20]\n"      # right
            "Exploring Operation: 23+17=38, Resulting Numbers: [38]\n"     # 40
            "Exploring Operation: 7-9=2, Resulting Numbers: [2]\n"         # the game writes larger first
            "Exploring Operation: 12/5=2, Resulting Numbers: [2]\n"        # inexact
            "Moving to Node #0\nExploring Operation: 6*7=42, Resulting Numbers: [4, 42]\n")  # right
    assert countdown.arithmetic_slips(text) == (5, 3)
    assert countdown.arithmetic_slips("No solution found.\n") == (0, 0)


def test_fewer_than_two_goal_lines_is_no_answer():
    first_only = SOLVED[:SOLVED.index("Goal Reached") + len("Goal Reached\n")]
    assert extract_answer(first_only) is None
    assert not is_correct(NUMS, TARGET, first_only)
    assert not is_correct(NUMS, TARGET, "")


def test_hostile_strings_get_false_not_exceptions():
    rng = random.Random(0)
    hostile = [
        "", "\x00\xff\ud800", "Goal Reached" * 2, "Goal Reached" * 100_000,
        "Goal Reached\nExploring Operation: " + "9" * 5000 + "*9=1, Resulting Numbers: [1]\n27,27 equal: Goal Reached",
        "Goal Reached\nExploring Operation: 1+1=2, Resulting Numbers: [" + ", ".join(["1"] * 10000) + "]\nGoal Reached",
        SOLVED.replace("27", "2" * 30), SOLVED.encode(), None, 12345, ["Goal Reached"] * 3,
    ]
    for _ in range(300):  # random corruptions of a correct trace
        chars = list(SOLVED)
        for _ in range(rng.randint(1, 5)):
            chars[rng.randrange(len(chars))] = rng.choice("0123456789[],:-+*/= \n#\x00é")
        hostile.append("".join(chars))
    for text in hostile:
        assert is_correct(NUMS, TARGET, text) in (True, False)
    assert not any(is_correct(NUMS, TARGET, t) for t in hostile[:11])


def test_moves_follow_the_rules():
    assert countdown.moves(53, 22) == [(75, "53+22=75"), (1166, "53*22=1166"), (31, "53-22=31")]
    assert countdown.moves(22, 44) == [(66, "22+44=66"), (968, "22*44=968"), (22, "44-22=22"), (2, "44/22=2")]
    assert countdown.moves(0, 5) == [(5, "0+5=5"), (0, "0*5=0"), (5, "5-0=5")]  # never divide by 0


def brute_force_solvable(nums, target):
    """The obviously correct check: try every sequence of moves."""
    if len(nums) == 1:
        return nums[0] == target
    for i, j in itertools.combinations(range(len(nums)), 2):
        rest = [nums[k] for k in range(len(nums)) if k not in (i, j)]
        if any(brute_force_solvable(rest + [v], target) for v, _ in countdown.moves(nums[i], nums[j])):
            return True
    return False


def test_fast_solvability_check_agrees_with_brute_force():
    rng = random.Random(1)
    for _ in range(1500):
        count = rng.choice([2, 3, 4])
        nums = [rng.randint(0, 30) for _ in range(count)]
        target = rng.randint(2, 60)
        assert countdown.is_solvable(nums, target) == brute_force_solvable(nums, target), (nums, target)


def test_generated_problems_are_solvable_and_their_solutions_verify():
    game = GameConfig()
    for problem in countdown.generate_problems(200, seed=3, split="train", game=game):
        nums, target = problem["nums"], problem["target"]
        assert len(nums) == 4 and all(1 <= x <= 99 for x in nums) and 10 <= target <= 100
        remaining = list(nums)
        steps = []
        for op in problem["solution"]:  # render the stored solution as a summary path
            x, rest = op.split("+") if "+" in op else op.split("*") if "*" in op else \
                op.split("-") if "-" in op else op.split("/")
            y, z = rest.split("=")
            remaining.remove(int(x))
            remaining.remove(int(y))
            remaining.append(int(z))
            steps.append(f"Exploring Operation: {op}, Resulting Numbers: {remaining}")
        answer = "\n" + "\n".join(steps) + f"\n{target},{target} equal: Goal Reached\n"
        assert check_solution(nums, target, answer), problem


def test_generation_is_identical_for_one_and_two_workers(tmp_path):
    for split in ("train", "val"):
        files = []
        for workers in (1, 2):
            out = tmp_path / f"{split}{workers}.jsonl"
            assert countdown.main(["--split", split, "--n", "600", "--seed", "5", "--workers", str(workers),
                                   "--out", str(out), "--quiet"]) == 0
            files.append(out.read_bytes())
        assert files[0] == files[1]
        assert len(files[0].splitlines()) == 600


def test_splits_never_share_a_problem():
    # a small task, where a shared pair would be likely if splits did not own their pairs
    game = GameConfig(count=3, num_min=1, num_max=20, target_min=10, target_max=30)
    keys = {}
    for split in countdown.SPLITS:
        problems = list(countdown.generate_problems(300 if split == "train" else 150, seed=0, split=split, game=game))
        keys[split] = {(tuple(sorted(p["nums"])), p["target"]) for p in problems}
        if split != "train":
            assert len(keys[split]) == len(problems), "evaluation splits hold unique problems"
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]


def test_asking_for_more_unique_problems_than_a_split_has_fails_cleanly(monkeypatch):
    monkeypatch.setattr(countdown, "MAX_REPEATS", 100)
    tiny = GameConfig(count=3, num_min=1, num_max=12, target_min=10, target_max=20)  # ~40 val problems
    with pytest.raises(ValueError, match="distinct problems"):
        list(countdown.generate_problems(100, seed=0, split="val", game=tiny))


def test_different_seeds_give_different_problems():
    a = list(countdown.generate_problems(20, seed=0))
    b = list(countdown.generate_problems(20, seed=1))
    assert a != b


@pytest.mark.parametrize("args, message", [
    (["--n", "-5"], "--n must be at least 1"),
    (["--n", "0"], "--n must be at least 1"),
    (["--count", "6"], "--count must be in 2..5"),
    (["--target-max", "20000"], "--target-max <= 10000"),
    (["--count", "5", "--num-min", "1", "--num-max", "1"], "never reach"),  # five 1s make at most 6
    (["--count", "2", "--num-max", "3", "--target-min", "10"], "can never reach"),  # 3 * 3 < 10
    (["--count", "1"], "--count must be in 2..5"),
    (["--num-min", "50", "--num-max", "10"], "--num-min"),
    (["--workers", "0"], "--workers"),
])
def test_bad_parameters_fail_in_one_line_and_leave_no_file(tmp_path, capsys, args, message):
    out = tmp_path / "problems.jsonl"
    assert countdown.main(args + ["--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_parameters_that_rarely_reach_a_target_fail_cleanly(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(countdown, "MAX_DRAWS", 200)
    out = tmp_path / "p.jsonl"
    # two numbers in 2..4 can make 16 (above 15, so the quick bound does not object) but never 15:
    # only the draw limit can tell
    args = ["--count", "2", "--num-min", "2", "--num-max", "4", "--target-min", "15", "--target-max", "15"]
    assert countdown.main(args + ["--out", str(out), "--quiet"]) == 2
    assert "no solvable" in capsys.readouterr().err
    assert not out.exists()


def test_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "keep.jsonl"
    out.write_text("old\n")

    def lines():
        yield "new\n"
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        countdown.write_atomically(str(out), lines())
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


def test_read_problems_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"nums": [1, 2], "target": 3}) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        countdown.read_problems(str(bad))
    with pytest.raises(ValueError, match="does not exist"):
        countdown.read_problems(str(tmp_path / "missing.jsonl"))


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """A writer killed mid-write (SIGKILL: no cleanup) leaves `path.tmp<pid>`; the next write of
    the same path removes it, and leaves a live process's temporary file alone."""
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "problems.jsonl"
    stale = tmp_path / f"problems.jsonl.tmp{int(dead.stdout)}"
    stale.write_text("half a fi")
    live = tmp_path / f"problems.jsonl.tmp{os.getppid()}"
    live.write_text("another writer's")
    countdown.write_atomically(str(out), ["done\n"])
    assert out.read_text() == "done\n" and not stale.exists() and live.exists()
