"""
The measurements behind three of the engine's settings, on a trained APR checkpoint:

    python experiments/engine_choices.py out/sft_apr_tiny --problems 64

- the key precision on a CPU: attention over 64 rows of 400 cached slots with fp32, fp16 and
  bf16 keys and values (`KVCache` stores fp32 on a CPU);
- `Engine.parent_rows`, the rows that threads which may spawn can hold: greedy decoding of the
  validation problems at several values (the engine uses a third of the rows);
- `KVCache.SEGMENT_OVERHEAD`, the cost of one more attention call in slot-rows: the same
  decoding at several values, with the slots read per slot needed;
- what a decoding pass costs besides attention, at 30 rows of 211 tokens;
- and the attention kernel's read rate against the memory's (`--only kernels`, no checkpoint
  needed): one pass's attention at 64 rows of 400 slots in 4 layers, by
  `scaled_dot_product_attention`, by matmul-softmax-matmul, and by each through `torch.compile`,
  beside a plain read of the same slices (a sum: what the access pattern allows).

Prints one line per setting: seconds, new tokens/s, and whether the greedy texts are the same
as at the first setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bench  # noqa: E402
import countdown  # noqa: E402
import model as M  # noqa: E402
from rollout import Engine  # noqa: E402


def key_precision() -> None:
    """Milliseconds of one attention call per key dtype (best of 20)."""
    keys = torch.randn(64, 4, 768, 32)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        k, v = keys[:, :, :400].to(dtype), keys[:, :, :400].to(dtype)
        q = torch.randn(64, 4, 1, 32).to(dtype)
        best = float("inf")
        for _ in range(20):
            start = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v)
            best = min(best, time.perf_counter() - start)
        print(f"keys in {str(dtype).replace('torch.', ''):<9} {best * 1e3:6.2f} ms per attention call")


def attention_kernels(layers: int = 4, rows: int = 64, length: int = 400) -> None:
    """GB/s of keys and values read by one decoding pass's attention, per kernel, beside the
    STREAM copy's: each layer has its own cache, so the pass reads more than the CPU's caches hold."""
    caches = [(torch.randn(rows, 4, 768, 32), torch.randn(rows, 4, 768, 32)) for _ in range(layers)]
    q = torch.randn(rows, 4, 1, 32)

    def matmuls(q, k, v):
        return torch.matmul((torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1), v)
    def plain_read(q, k, v):  # no attention: each key and value read once, the least any kernel must do
        return k.sum() + v.sum()
    kernels = {"scaled_dot_product_attention": F.scaled_dot_product_attention, "matmul-softmax-matmul": matmuls}
    kernels.update({f"{name}, compiled": torch.compile(fn, dynamic=True) for name, fn in list(kernels.items())})
    kernels["plain read of the same keys and values"] = plain_read
    read = layers * 2 * rows * 4 * length * 32 * 4
    print(f"memory: {bench.stream_bandwidth() / 1e9:.1f} GB/s (STREAM copy); attention over {read / 1e6:.0f} MB:")
    with torch.inference_mode():
        for name, kernel in kernels.items():
            def one_pass():
                for k, v in caches:
                    kernel(q, k[:, :, :length], v[:, :, :length])
            one_pass()  # compiles, where it does
            best = float("inf")
            for _ in range(20):
                start = time.perf_counter()
                one_pass()
                best = min(best, time.perf_counter() - start)
            print(f"  {name:<38} {best * 1e3:6.2f} ms, {read / best / 1e9:5.1f} GB/s")


def pass_parts(gpt, rows: int = 30, length: int = 211) -> None:
    """Milliseconds of one decoding pass of `gpt` over `rows` rows of `length` cached tokens, with
    attention and with attention replaced by a no-op: what the pass costs besides reading keys."""
    cache = M.KVCache(gpt.config, 64, gpt.config.context)
    batch = cache.allocate(rows)
    idx = torch.zeros(rows, 1, dtype=torch.long)

    def one_pass():
        cache.lengths[batch] = length
        gpt(idx, kv_cache=cache, rows=batch, last_only=True)

    def best(n=100):
        one_pass()
        start = time.perf_counter()
        for _ in range(n):
            one_pass()
        return (time.perf_counter() - start) / n
    with torch.inference_mode():
        full = best()
        attention = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = lambda q, k, v, attn_mask=None: q
        try:
            rest = best()
        finally:
            F.scaled_dot_product_attention = attention
    c = gpt.config
    keys = c.n_layer * rows * (length + 1) * 2 * c.n_embd * cache.k.element_size()
    print(f"a pass over {rows} rows of {length} tokens: {full * 1e3:.2f} ms, {rest * 1e3:.2f} ms without attention; "
          f"attention read {keys / (full - rest) / 1e9:.1f} GB/s")


def decode(gpt, tok, problems, rows: int, setting) -> dict:
    """Greedy APR decoding with `setting(engine)` applied; seconds, rate, texts and slot counts."""
    counts = {"needed": 0, "read": 0, "passes": 0, "rows": 0}
    plan = M.KVCache.plan

    def counting_plan(cache, batch_rows, starts, T):
        out = plan(cache, batch_rows, starts, T)
        counts["passes"] += 1
        counts["rows"] += len(batch_rows)
        counts["needed"] += sum(s + T for s in starts)
        counts["read"] += sum((s["block"][1] - s["block"][0]) * s["span"] for s in out.get("segments", []))
        return out
    M.KVCache.plan = counting_plan
    try:
        engine = Engine(gpt, tok, parallel=True, max_rows=rows)
        setting(engine)
        start = time.perf_counter()
        results = engine.run(problems)
        seconds = time.perf_counter() - start
    finally:
        M.KVCache.plan = plan
        M.KVCache.SEGMENT_OVERHEAD = DEFAULT_OVERHEAD
    return {"seconds": seconds, "rate": bench.sampled_tokens(results) / seconds, "texts": [r["text"] for r in results],
            **counts}


DEFAULT_OVERHEAD = M.KVCache.SEGMENT_OVERHEAD


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The measurements behind the engine's settings.")
    parser.add_argument("ckpt", nargs="?", help="a trained APR run folder or checkpoint (all but keys, kernels)")
    parser.add_argument("--problems", type=int, default=64, help="validation problems decoded")
    parser.add_argument("--rows", type=int, default=64, help="KV cache rows")
    parser.add_argument("--only", choices=["keys", "kernels", "pass", "parent_rows", "segments"], action="append",
                        help="measure only these (repeatable); default: all")
    args = parser.parse_args(argv)
    parts = args.only or ["keys", "kernels", "pass", "parent_rows", "segments"]
    if "keys" in parts:
        key_precision()
    if "kernels" in parts:
        attention_kernels()
    if not set(parts) - {"keys", "kernels"}:
        return 0
    if args.ckpt is None:
        parser.error("a checkpoint is needed for pass, parent_rows and segments")
    gpt, tok, state = M.load_checkpoint(args.ckpt, "cpu")
    task = countdown.GameConfig(**state["train_config"]["task"])
    problems = countdown.read_problems(countdown.problems_file(task, "val", args.problems,
                                                               state["args"].get("data_dir", "data")))
    if "pass" in parts:
        pass_parts(gpt)
    first = None
    for cap in (8, 12, 16, 21, 32, args.rows - 1) if "parent_rows" in parts else ():
        out = decode(gpt, tok, problems, args.rows, lambda engine: setattr(engine, "parent_rows", cap))
        first = first or out["texts"]
        print(f"parent_rows {cap:>3}: {out['seconds']:6.1f} s, {out['rate']:>6,.0f} new tokens/s, "
              f"{out['rows'] / out['passes']:.1f} rows per pass, same texts: {out['texts'] == first}")
    for overhead in (0, 64, 256, 1024, 10 ** 6) if "segments" in parts else ():
        out = decode(gpt, tok, problems, args.rows, lambda engine: setattr(M.KVCache, "SEGMENT_OVERHEAD", overhead))
        first = first or out["texts"]
        print(f"SEGMENT_OVERHEAD {overhead:>7}: {out['seconds']:6.1f} s, {out['rate']:>6,.0f} new tokens/s, "
              f"slots read per slot needed {out['read'] / out['needed']:.2f}, same texts: {out['texts'] == first}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
