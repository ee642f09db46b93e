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
    torch.manual_seed(0)
    config = M.GPTConfig(vocab_size=TOK.vocab_size, n_layer=2, n_embd=32, n_head=2, mlp_hidden=48, context=96)
    gpt = M.GPT(config).eval()
    problems = list(countdown.generate_problems(5, seed=2))
    results = Engine(gpt, TOK, parallel=False, max_rows=4).run(problems)
    for problem, out in zip(problems, results):
        prompt = [TOK.bos_id] + TOK.encode(search.root_prompt(problem["nums"], problem["target"], False))
        expected = naive_greedy(gpt, prompt, 200, config.context)
        assert out["threads"][0]["calls"][-1][0] == expected
