"""The tokenizer (tokenizer.py) and the model with its KV cache (model.py)."""

import json
import os
import random

import pytest
import torch
import torch.nn.functional as F

import model as M
from model import GPT, GPTConfig, KVCache
from tokenizer import PHRASES, Tokenizer

TINY = GPTConfig(vocab_size=61, n_layer=2, n_embd=32, n_head=2, mlp_hidden=48, context=64)


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(TINY).eval()


def full_logits(gpt, tokens):
    """The obviously correct path: one uncached causal pass over one sequence."""
    with torch.no_grad():
        return gpt(torch.tensor([tokens]))[0]


# ---------------------------------------------------------------------------------------------
# Tokenizer

TRACE = ("Moving to Node #0\nCurrent State: 27:[22, 26, 31, 53], Operations: []\n"
         "Exploring Operation: 53-22=31, Resulting Numbers: [26, 31, 31]\n"
         "Generated Node #0,0: 27:[26, 31, 31] Operation: 53-22=31\n"
         "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #0,0\n"
         "<End Calling Sub Searches>\n")


@pytest.mark.parametrize("numbers", ["whole", "digits"])
def test_encode_decode_round_trips_traces_and_any_unicode(numbers):
    tok = Tokenizer(numbers)
    rng = random.Random(0)
    alphabet = "abc 0123456789\n\t[],:'#<>|é漢字😀\x00\x7f"
    texts = [TRACE, "", "<|eos|><|bos|>", "9" * 50] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(200)]
    texts.append("".join(chr(rng.randint(0x20, 0x10FFFF)) for _ in range(300)).encode("utf-8", "ignore").decode())
    for text in texts:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.bos_id not in tok.encode("<|bos|>"), "special names in text stay text"


def test_fixed_phrases_and_numbers_are_single_tokens():
    whole, digits = Tokenizer("whole", 1000), Tokenizer("digits")
    for phrase in PHRASES:
        assert len(whole.encode(phrase)) == 1 and len(digits.encode(phrase)) == 1, phrase
    for n in (0, 7, 10, 99, 540, 999):
        assert len(whole.encode(str(n))) == 1
        assert len(digits.encode(str(n))) == len(str(n))
    assert whole.decode(whole.encode("12345")) == "12345" and len(whole.encode("12345")) == 2
    line = "Exploring Operation: 53-22=31, Resulting Numbers: [26, 31, 31]\n"
    pieces = [whole.decode([i]) for i in whole.encode(line)]
    assert pieces == ["Exploring Operation: ", "53", "-", "22", "=", "31", ", Resulting Numbers: [",
                      "26", ", ", "31", ", ", "31", "]\n"]


def test_decode_out_of_range_raises_value_error():
    tok = Tokenizer()
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([-1])


def test_render_marks_written_tokens_and_eos():
    tok = Tokenizer()
    prompt, written = "Moving to Node #0\nCurrent State: 27:[22, 26], Operations: []\n", "No solution found.\n"
    ids, mask = tok.render([(prompt, False), (written, True)])
    n_prompt = len(tok.encode(prompt))
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert mask == [0] * (1 + n_prompt) + [1] * len(tok.encode(written)) + [1]
    assert tok.decode(ids[1:-1]) == prompt + written


def test_encoding_line_by_line_equals_encoding_the_whole():
    """The runtime encodes injected text apart from what the model wrote; at line boundaries
    that must give the same ids as encoding the concatenation."""
    tok = Tokenizer()
    lines = TRACE.splitlines(keepends=True)
    assert sum((tok.encode(line) for line in lines), []) == tok.encode(TRACE)


def test_window_table_counts_a_problem_only_where_every_thread_fits(tmp_path, capsys):
    """tokenizer.py --windows: the share solved within W grows with W from 0 to the solved share,
    and an APR problem computes more tokens than its longest thread, not all of them written."""
    import search
    from tokenizer import fits_windows
    problems = [{"nums": [3, 7, 9], "target": 48}, {"nums": [5, 16, 11], "target": 22}, {"nums": [2, 7, 11], "target": 36}]
    path = tmp_path / "apr.jsonl"
    path.write_text("".join(json.dumps(search.demonstrate(p, i, "apr", 0, search.DEFAULTS["apr"])) + "\n"
                            for i, p in enumerate(problems)))
    fits_windows([str(path)], [1, 200, 100_000], per_file=10)
    row = capsys.readouterr().out.strip().split("\n")[-1].strip("| ").split(" | ")
    solved, median = row[1], int(row[2].split(" / ")[0])
    assert (row[3], row[5]) == ("0.0%", solved) and float(row[4][:-1]) <= float(solved[:-1])
    assert int(row[6].replace(",", "")) > median and 0 < int(row[7][:-1]) < 100


def test_tokenizer_identity_is_checked():
    identity = Tokenizer().identity()
    assert Tokenizer.from_identity(identity).identity() == identity
    with pytest.raises(ValueError, match="mismatch"):
        Tokenizer.from_identity({**identity, "sha256": "0" * 16})


# ---------------------------------------------------------------------------------------------
# Model and KV cache

def test_paper_preset_has_227_7m_non_embedding_parameters():
    with torch.device("meta"):
        gpt = GPT(M.preset("paper", vocab_size=32000))
    assert round(gpt.num_params() / 1e6, 1) == 227.7
    assert round(gpt.num_params(non_embedding=False) / 1e6) == 293  # with their 32k vocabulary


def test_per_token_logprobs_match_log_softmax(gpt):
    idx = torch.randint(0, TINY.vocab_size, (3, 10))
    targets = torch.randint(0, TINY.vocab_size, (3, 10))
    targets[0, :4] = -1
    with torch.no_grad():
        logprobs = gpt(idx, targets, reduction="none")
        expected = F.log_softmax(gpt(idx), -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        loss = gpt(idx, targets)
    assert torch.allclose(logprobs[targets != -1], expected[targets != -1], atol=1e-5)
    assert (logprobs[targets == -1] == 0).all()
    assert torch.allclose(loss, -logprobs[targets != -1].mean(), atol=1e-5)


@pytest.mark.parametrize("cache_rows, picked, reference, overhead", [
    (6, (2, 0, 3, 1), False, 256), (4, (2, 0, 3, 1), False, 256), (12, (9, 0, 11, 4), False, 256),
    (12, (9, 0, 11, 4), False, 0), (12, (9, 0, 11, 4), False, 10 ** 6), (6, (2, 0, 3, 1), True, 256)])
def test_cached_decoding_matches_full_forward_for_ragged_rows(gpt, cache_rows, picked, reference, overhead):
    """Rows out of order, in a cache with spare rows and in one whose every row is in the batch
    (a full batch in permuted order once took the contiguous-view path and misaligned rows), and
    rows scattered over a larger cache; read in place as blocks of rows split where the cost
    model says (a call's overhead of 256 slot-rows; 0: a block per run of rows; 10**6: one block
    over every row, holes included), and gathered (the reference path)."""
    torch.manual_seed(1)
    seqs = [torch.randint(0, TINY.vocab_size, (n,)).tolist() for n in (5, 17, 1, 30)]
    prompt_lens = [3, 9, 1, 20]
    cache = KVCache(TINY, rows=cache_rows, reference=reference)
    cache.SEGMENT_OVERHEAD = overhead
    rows = cache.allocate(cache_rows)
    rows = [rows[i] for i in picked]
    T = max(prompt_lens)
    padded = torch.zeros(4, T, dtype=torch.long)
    for b, (seq, n) in enumerate(zip(seqs, prompt_lens)):
        padded[b, :n] = torch.tensor(seq[:n])
    with torch.no_grad():
        logits = gpt(padded, kv_cache=cache, rows=rows, n_new=prompt_lens)
        for b, (seq, n) in enumerate(zip(seqs, prompt_lens)):
            assert torch.allclose(logits[b, :n], full_logits(gpt, seq)[:n], atol=1e-5)
        # then one token at a time, each row at its own length
        for step in range(max(len(s) - n for s, n in zip(seqs, prompt_lens))):
            live = [b for b, (s, n) in enumerate(zip(seqs, prompt_lens)) if n + step < len(s)]
            tokens = torch.tensor([[seqs[b][prompt_lens[b] + step]] for b in live])
            out = gpt(tokens, kv_cache=cache, rows=[rows[b] for b in live], last_only=True)
            for k, b in enumerate(live):
                position = prompt_lens[b] + step
                assert torch.allclose(out[k], full_logits(gpt, seqs[b])[position], atol=1e-5)
    assert [int(cache.lengths[r]) for r in rows] == [len(s) for s in seqs]


def test_a_bf16_cache_as_on_cuda_reads_the_same_on_both_paths(gpt):
    """Keys stored in bf16 (the CUDA default): ragged rows decoded through the fast path give the
    reference path's logits to bf16 rounding, and stay near the fp32 model's."""
    torch.manual_seed(2)
    seqs = [torch.randint(0, TINY.vocab_size, (n,)).tolist() for n in (9, 20, 14)]
    outs = {}
    for reference in (False, True):
        cache = KVCache(TINY, rows=5, dtype=torch.bfloat16, reference=reference)
        rows = [4, 0, 2]
        cache.allocate(5)
        with torch.no_grad():
            gpt(torch.tensor([s[:6] for s in seqs]), kv_cache=cache, rows=rows)
            outs[reference] = [gpt(torch.tensor([[s[t]] for s in seqs]), kv_cache=cache, rows=rows, last_only=True)
                               for t in range(6, 9)]
    for fast, ref, t in zip(outs[False], outs[True], range(6, 9)):
        assert fast.dtype == torch.float32 and torch.allclose(fast, ref, atol=2e-2)
        for b, s in enumerate(seqs):
            assert torch.allclose(fast[b], full_logits(gpt, s)[t], atol=5e-2)


def test_forked_rows_continue_exactly_like_their_source(gpt):
    prompt = torch.randint(0, TINY.vocab_size, (1, 12))
    cache = KVCache(TINY, rows=4)
    source = cache.allocate(1)[0]
    with torch.no_grad():
        first = gpt(prompt, kv_cache=cache, rows=[source], last_only=True)
    cache.fork(source, [1, 3])
    assert cache.lengths.tolist() == [12, 12, 0, 12]
    start = torch.full((3, 1), int(first[0].argmax()))
    outs, tokens = [], []
    with torch.no_grad():
        x = start  # each row decodes greedily from its own previous token
        for _ in range(15):
            logits = gpt(x, kv_cache=cache, rows=[0, 1, 3], last_only=True)
            outs.append(logits)
            x = logits.argmax(-1, keepdim=True)
            tokens.append(x[:, 0])
    logits, tokens = torch.stack(outs, 1), torch.stack(tokens, 1)  # (3 rows, 15 steps, ...)
    assert torch.equal(tokens[0], tokens[1]) and torch.equal(tokens[0], tokens[2])
    # rows of one batch may round differently in the last bit, never more
    assert torch.allclose(logits[0], logits[1], atol=1e-5) and torch.allclose(logits[0], logits[2], atol=1e-5)


def test_truncate_then_append_equals_a_fresh_prefill(gpt):
    a, b, c = (torch.randint(0, TINY.vocab_size, (1, n)) for n in (10, 7, 9))
    cache = KVCache(TINY, rows=2)
    row = cache.allocate(1)[0]
    with torch.no_grad():
        gpt(torch.cat([a, b], 1), kv_cache=cache, rows=[row])
        cache.truncate(row, a.shape[1])  # drop b, as a parent drops its spawn block at join
        continued = gpt(c, kv_cache=cache, rows=[row])
    fresh = full_logits(gpt, torch.cat([a, c], 1)[0].tolist())[a.shape[1]:]
    assert torch.allclose(continued[0], fresh, atol=1e-5)
    with pytest.raises(ValueError):
        cache.truncate(row, 100)


def test_freed_rows_are_reused_without_leaking_keys(gpt):
    cache = KVCache(TINY, rows=3)
    rows = cache.allocate(3)
    with torch.no_grad():
        gpt(torch.randint(0, TINY.vocab_size, (3, 40)), kv_cache=cache, rows=rows)  # long, then freed
        cache.free([1])
        assert cache.allocate(1) == [1] and int(cache.lengths[1]) == 0
        short = torch.randint(0, TINY.vocab_size, (1, 6))
        reused = gpt(short, kv_cache=cache, rows=[1])
    assert torch.allclose(reused[0], full_logits(gpt, short[0].tolist()), atol=1e-5)
    with pytest.raises(RuntimeError, match="full"):
        cache.allocate(1)


def test_cache_and_context_limits_raise(gpt):
    cache = KVCache(TINY, rows=1, max_len=8)
    row = cache.allocate(1)
    with pytest.raises(ValueError, match="slots"):
        gpt(torch.zeros(1, 9, dtype=torch.long), kv_cache=cache, rows=row)
    with pytest.raises(ValueError, match="context"):
        gpt(torch.zeros(1, TINY.context + 1, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Checkpoints and devices (DDP: the torchrun tests of train_sft and train_rl)

def test_checkpoint_round_trips_and_refuses_mismatches(tmp_path, gpt):
    tok = Tokenizer()
    config = M.preset("tiny", vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, mlp_hidden=48)
    torch.manual_seed(0)
    model = GPT(config)
    path = str(tmp_path / "ckpt.pt")
    M.save_checkpoint(path, model, tok, args={"lr": 0.1}, step=7)
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    loaded, loaded_tok, state = M.load_checkpoint(path, expect_config=config, expect_tokenizer=tok.identity())
    x = torch.randint(0, tok.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert state["args"] == {"lr": 0.1} and state["step"] == 7 and loaded_tok.identity() == tok.identity()
    with pytest.raises(ValueError, match="another model config"):
        M.load_checkpoint(path, expect_config=M.preset("tiny", vocab_size=tok.vocab_size))
    with pytest.raises(ValueError, match="tokenizer"):
        M.load_checkpoint(path, expect_tokenizer=Tokenizer("digits").identity())
    with pytest.raises(ValueError, match="no checkpoint at .*missing.pt"):
        M.load_checkpoint(str(tmp_path / "missing.pt"))
    # a run folder stands for the checkpoint inside it
    with torch.no_grad():
        assert torch.equal(M.load_checkpoint(str(tmp_path))[0](x), loaded(x))


def test_device_override_and_cpu_default():
    assert M.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert M.pick_device().type in ("cpu", "mps")
