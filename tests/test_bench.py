"""bench.py at minute scale: each part runs on a tiny load and prints its figures beside the
baseline it is measured against."""

import os

import pytest

import bench
from conftest import TINY_SFT_RUN

import train_sft


def test_search_and_rollout_parts_print_their_ratios(capsys):
    assert bench.main(["--part", "search", "--n", "30", "--repeats", "1"]) == 0
    assert bench.main(["--part", "rollout", "--rows", "2", "--new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "x authors" in out and "paper-sized data" in out
    assert "-> engine" in out and "re-prefilling" in out
    assert out.count("of the roofline") == 2 and "engine / reference" in out and "the same greedy texts: True" in out


def test_the_forward_log_records_every_pass_and_the_roofline_counts_its_bytes():
    """The log sees each cached pass as the model does (lengths before it, new tokens per row),
    and a memory-bound pass's roofline is its bytes over the bandwidth: every weight but the
    embedding, one embedding row per token, keys and values read up to the new length and written."""
    import torch

    import model as M
    config = M.GPTConfig(vocab_size=50, n_layer=2, n_embd=16, n_head=2, mlp_hidden=32, context=32)
    gpt = M.GPT(config).eval()
    cache = M.KVCache(config, rows=3)
    with torch.no_grad(), bench.ForwardLog(gpt, bench.time.perf_counter) as log:
        gpt(torch.zeros(2, 5, dtype=torch.long), kv_cache=cache, rows=[2, 0], n_new=[3, 5])
        gpt(torch.zeros(2, 1, dtype=torch.long), kv_cache=cache, rows=[0, 2])
    assert log.calls == [([0, 0], [3, 5]), ([5, 3], [1, 1])]
    assert "forward" not in vars(gpt)  # the model's own forward again
    weights = 4 * (sum(p.numel() for p in gpt.parameters()) - gpt.embed.weight.numel())
    per_slot = 2 * config.n_layer * config.n_embd * 4
    moved = weights + 2 * config.n_embd * 4 + (6 + 4 + 2) * per_slot  # rows read 6 and 4 slots, write 2
    assert bench.roofline_seconds(gpt, log.calls[1:], 4, bandwidth=1e9, peak=1e30) == pytest.approx(moved / 1e9)


def test_apr_part_decodes_a_checkpoint_three_ways_with_the_same_texts(tmp_path, capsys):
    run = tmp_path / "apr"
    assert train_sft.main(TINY_SFT_RUN + ["--mode", "apr", "--steps", "1", "--data-dir", str(tmp_path / "data"),
                                          "--out", str(run)]) == 0
    capsys.readouterr()
    project = os.path.dirname(os.path.abspath(bench.__file__))  # this checkout as its own baseline
    assert bench.main(["--part", "apr", "--ckpt", str(run), "--problems", "2", "--repeats", "1",
                       "--baseline", project]) == 0
    out = capsys.readouterr().out
    assert "engine / reference" in out and out.count("the same greedy texts: True") == 2
