"""bench.py at minute scale: each part runs on a tiny load and prints its figures beside the
baseline it is measured against."""

import bench
from conftest import TINY_SFT_RUN

import train_sft


def test_search_and_rollout_parts_print_their_ratios(capsys):
    assert bench.main(["--part", "search", "--n", "30", "--repeats", "1"]) == 0
    assert bench.main(["--part", "rollout", "--rows", "2", "--new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "x authors" in out and "paper-sized data" in out
    assert "-> engine" in out and "outside the model's forward" in out and "re-prefilling" in out


def test_apr_part_decodes_a_checkpoint_both_ways_with_the_same_texts(tmp_path, capsys):
    run = tmp_path / "apr"
    assert train_sft.main(TINY_SFT_RUN + ["--mode", "apr", "--steps", "1", "--data-dir", str(tmp_path / "data"),
                                          "--out", str(run)]) == 0
    capsys.readouterr()
    assert bench.main(["--part", "apr", "--ckpt", str(run), "--problems", "2", "--repeats", "1"]) == 0
    assert "same greedy texts: True" in capsys.readouterr().out
