"""
The language model: a small Llama-2 style GPT trained from scratch, and the KV cache that the
spawn/join rollout engine is built on. Needs only torch (and countdown.py's file helper).

    python model.py --preset tiny        # print the config and parameter counts of a preset

Architecture (the paper's): token embedding, N pre-norm blocks of
(RMSNorm -> causal self-attention with rotary positions) and (RMSNorm -> SwiGLU MLP), final
RMSNorm, untied output head, no biases anywhere. `GPTConfig` presets: `paper` (18 layers, width
1024, 227.7M non-embedding parameters, context 4,096), `small` (one GPU) and `tiny` (a 2-core
CPU).

One `forward` serves three uses:
- training: `model(idx, targets)` returns the mean cross-entropy over targets that are not -1;
- RL: `model(idx, targets, reduction="none")` returns each target token's log-probability;
- decoding: `model(idx, kv_cache=cache, rows=rows)` appends the tokens to those cache rows and
  returns their logits.

The KV cache (`KVCache`) is what makes spawn/join cheap. It is preallocated per layer with a fixed
number of rows, and keeps an explicit length per row: rows hold threads of different lengths that
start and end at different times. A row's next token goes to slot `lengths[row]` with rotary
position `lengths[row]`; attention for a row only sees that row's slots below its own length, so
a freed, truncated or forked row never shows another row's keys or stale ones. Operations:
`allocate`, `free`, `fork` (copy a row into new rows: a prompt prefilled once, sampled n times)
and `truncate` (a parent drops its spawn block at join and continues from an earlier length).

Left out on purpose: dropout (the data is generated fresh), weight tying (the paper's model is
untied), grouped-query attention, torch.compile (off by default to keep the code the reference).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pickle
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from countdown import clear_stale_temporaries

# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 1282       # set from the tokenizer (tokenizer.Tokenizer().vocab_size)
    n_layer: int = 4             # transformer blocks
    n_embd: int = 256            # width of the residual stream
    n_head: int = 4              # attention heads; head size is n_embd / n_head
    mlp_hidden: int = 688        # SwiGLU hidden width (Llama uses about 8/3 of n_embd)
    context: int = 1024          # longest sequence a thread may hold, in tokens
    rope_theta: float = 10000.0  # rotary base frequency
    norm_eps: float = 1e-5       # RMSNorm epsilon

    def __post_init__(self):
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd {self.n_embd} must split into {self.n_head} heads of even size")


PRESETS = {
    # the paper's model: 227.7M parameters outside the embeddings, 4k context
    "paper": GPTConfig(n_layer=18, n_embd=1024, n_head=16, mlp_hidden=2752, context=4096),
    # one GPU, about an hour of SFT
    "small": GPTConfig(n_layer=8, n_embd=512, n_head=8, mlp_hidden=1376, context=4096),
    # a 2-core CPU: narrow, because on this budget tokens seen beat width; a 768-token window per
    # thread (docs/experiments.md, "The 4-number task and its window")
    "tiny": GPTConfig(n_layer=4, n_embd=128, n_head=4, mlp_hidden=352, context=768),
}


def swiglu_hidden(n_embd: int) -> int:
    """Llama's SwiGLU width for a residual width: 8/3 of it (the same parameters as a 4x GELU
    MLP), rounded up to a multiple of 16 for the matmul kernels."""
    return 16 * math.ceil(8 * n_embd / 3 / 16)


def preset(name: str, **overrides) -> GPTConfig:
    """A preset's config with some fields changed; a new width brings its own MLP width unless
    that is given too (a preset's hidden width belongs to its width)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if "n_embd" in overrides and "mlp_hidden" not in overrides:
        overrides["mlp_hidden"] = swiglu_hidden(overrides["n_embd"])
    return replace(PRESETS[name], **overrides)


# ---------------------------------------------------------------------------------------------
# Layers, from primitives up

class RMSNorm(nn.Module):
    """x / rms(x) * weight: LayerNorm without the mean and the bias (Llama)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one call, the same numbers


def rotary_table(head_dim: int, length: int, theta: float):
    """cos and sin of position * frequency, each (length, head_dim / 2)."""
    freqs = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), freqs)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x, cos, sin):
    """Rotate each pair (x[i], x[i + D/2]) of every head by its position's angle.
    x: (B, T, heads, D); cos, sin: (B, T, 1, D/2), one row of positions per batch row (or
    (1, T, 1, D/2) when every row starts at position 0)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, cache=None, layer=0, plan=None):
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3 * self.n_head, self.head_dim)
        # queries and keys rotated in one call; then (B, T, heads, D) -> (B, H, T, D)
        qk = apply_rotary(qkv[:, :, :2 * self.n_head], cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (qk[:, :, :self.n_head], qk[:, :, self.n_head:],
                                               qkv[:, :, 2 * self.n_head:]))
        if cache is None:  # training: plain causal attention over this sequence
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = cache.attend(layer, plan, q, k, v)
        # (B, H, T, D) -> (B, T, C)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.up = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, **cache_args):
        x = x + self.attn(self.attn_norm(x), cos, sin, **cache_args)
        return x + self.mlp(self.mlp_norm(x))


# ---------------------------------------------------------------------------------------------
# The KV cache

class KVCache:
    """Keys and values of up to `rows` threads, each up to `max_len` tokens, for every layer.

    `lengths[r]` is how many tokens row r holds; its slots beyond that are stale and never
    attended to. A row is allocated to a thread, grows by `GPT.forward`, and is freed when the
    thread ends; `fork` and `truncate` serve sampling groups and joins. The lengths live on the
    host, so a forward pass plans its reads without waiting on the device.

    Keys are stored in `dtype`: bf16 on CUDA, where autocast rounds them to bf16 before attention
    anyway (so storing them so loses nothing), fp32 elsewhere (docs/experiments.md, "The engine at
    its roofline": half-precision keys do not read faster on a CPU). `reference=True` attends by
    gathering each batch row's keys, the obviously correct path the fast one is tested against.
    """

    def __init__(self, config: GPTConfig, rows: int, max_len: int | None = None, device="cpu",
                 dtype: torch.dtype | None = None, reference: bool = False):
        self.max_len = max_len or config.context
        self.reference = reference
        self.n_head, head_dim = config.n_head, config.n_embd // config.n_head
        if dtype is None:
            dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        shape = (config.n_layer, rows, config.n_head, self.max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(rows, dtype=torch.long)
        self.in_use = [False] * rows

    @property
    def rows(self) -> int:
        return len(self.in_use)

    def allocate(self, n: int = 1) -> list[int]:
        """Take n free rows (empty, length 0); RuntimeError if there are not enough."""
        free = [r for r, used in enumerate(self.in_use) if not used][:n]
        if len(free) < n:
            raise RuntimeError(f"KV cache full: asked for {n} rows, {len(free)} of {self.rows} free")
        for r in free:
            self.in_use[r] = True
            self.lengths[r] = 0
        return free

    def free(self, rows) -> None:
        for r in rows:
            self.in_use[r] = False
            self.lengths[r] = 0

    def fork(self, source: int, targets, length: int | None = None) -> None:
        """Copy the first `length` slots of row `source` (default: all it holds) into each of the
        `targets` rows, which then hold that many tokens."""
        n = int(self.lengths[source]) if length is None else length
        if not 0 <= n <= int(self.lengths[source]):
            raise ValueError(f"cannot fork {n} slots of row {source}, which holds {int(self.lengths[source])}")
        targets = list(targets)
        index = torch.as_tensor(targets, dtype=torch.long, device=self.k.device)
        self.k[:, index, :, :n] = self.k[:, source:source + 1, :, :n]
        self.v[:, index, :, :n] = self.v[:, source:source + 1, :, :n]
        self.lengths[targets] = n

    def truncate(self, row: int, length: int) -> None:
        """Forget row's tokens from `length` on; the next token goes to slot `length`."""
        if not 0 <= length <= int(self.lengths[row]):
            raise ValueError(f"cannot truncate row {row} of length {int(self.lengths[row])} to {length}")
        self.lengths[row] = length

    def plan(self, rows: list[int], starts: list[int], T: int) -> dict:
        """Where a forward pass writes and reads the cache, worked out once for all its layers:
        T new tokens of row rows[b] go to slots starts[b] + t, and query t sees exactly slots
        0 .. starts[b] + t of its row."""
        device = self.k.device
        rows_t, starts_t = torch.tensor(rows), torch.tensor(starts)
        steps = torch.arange(T)
        slots = starts_t[:, None] + steps  # (B, T)
        # the new keys' places in a layer seen as (rows * heads * slots, head_dim)
        heads = torch.arange(self.n_head)
        write = ((rows_t[:, None, None] * self.n_head + heads[None, :, None]) * self.max_len + slots[:, None, :])
        plan = {"write": write.reshape(-1).to(device, non_blocking=True), "slots": slots}
        if self.reference:
            span = max(starts) + T
            plan.update(rows=rows_t.to(device), span=span,
                        mask=visible(slots, span)[:, None].to(device, non_blocking=True))
        else:
            plan["segments"] = self._segments(rows, starts, T, slots)
        return plan

    # A segment costs its call overhead plus its block of rows times its span; this is the call's
    # overhead in slot-rows, from the engine's measurements (docs/experiments.md, "The engine at its
    # roofline").
    SEGMENT_OVERHEAD = 256

    def _segments(self, rows, starts, T, slots) -> list[dict]:
        """Split the batch into blocks of neighbouring cache rows, each attended in place (a view,
        nothing copied) over its own span: waiting parents and free rows between the batch's rows
        are read only where skipping them would cost more calls than it saves. Greedy over the
        rows in cache order: a row joins the block before it when that reads fewer slot-rows than
        starting a block of its own plus one call's overhead."""
        order = sorted(range(len(rows)), key=rows.__getitem__)
        device, B = self.k.device, len(rows)
        ordered = order == list(range(B))  # how the engine passes its rows
        segments = []
        for members in self._group(order, rows, starts, T):
            lo, hi = rows[members[0]], rows[members[-1]] + 1
            span = max(starts[b] for b in members) + T
            whole = members == list(range(B))  # the batch itself, in cache order
            filled = hi - lo == len(members)   # no rows of the block outside the batch
            place = None if filled else torch.tensor([rows[b] - lo for b in members], device=device)
            # one decoding token per row and every row at the span: it sees all its slots, no mask
            if T == 1 and filled and all(starts[b] + 1 == span for b in members):
                mask = None
            else:
                mask = torch.ones((hi - lo, T, span), dtype=torch.bool)
                mask[[rows[b] - lo for b in members]] = visible(slots[members], span)
                mask = mask[:, None].to(device, non_blocking=True)
            if whole:
                members = None
            elif ordered:  # the batch in cache order: a segment's queries are a slice of it
                members = slice(members[0], members[-1] + 1)
            else:
                members = torch.tensor(members, device=device)
            segments.append({"block": (lo, hi), "span": span, "place": place, "mask": mask, "members": members})
        return segments

    def _group(self, order, rows, starts, T) -> list[list[int]]:
        """The batch indices, in cache order, split into the segments' members."""
        groups, lo, hi, span = [], None, None, 0
        for b in order:
            r, need = rows[b], starts[b] + T
            if lo is not None:
                merged = (r + 1 - lo) * max(span, need)
                apart = (hi - lo) * span + self.SEGMENT_OVERHEAD + need
                if merged <= apart:
                    groups[-1].append(b)
                    hi, span = r + 1, max(span, need)
                    continue
            groups.append([b])
            lo, hi, span = r, r + 1, need
        return groups

    def attend(self, layer: int, plan: dict, q, k, v):
        """Write new keys and values (B, H, T, D) where `plan` says, then attend as it says;
        returns (B, H, T, D)."""
        D = k.shape[-1]
        self.k[layer].view(-1, D).index_copy_(0, plan["write"], k.reshape(-1, D).to(self.k.dtype))
        self.v[layer].view(-1, D).index_copy_(0, plan["write"], v.reshape(-1, D).to(self.v.dtype))
        dtype, q = q.dtype, q.to(self.k.dtype)  # attention in the cache's precision, as autocast would
        if self.reference:
            span = plan["span"]
            keys, values = self.k[layer, plan["rows"], :, :span], self.v[layer, plan["rows"], :, :span]
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=plan["mask"]).to(dtype)
        segments = plan["segments"]
        if len(segments) == 1 and segments[0]["members"] is None:
            return self._attend_block(layer, segments[0], q).to(dtype)
        if isinstance(segments[0]["members"], slice):  # consecutive slices of the batch, in order
            return torch.cat([self._attend_block(layer, seg, q[seg["members"]]) for seg in segments]).to(dtype)
        out = torch.empty_like(q)
        for seg in segments:
            out.index_copy_(0, seg["members"], self._attend_block(layer, seg, q.index_select(0, seg["members"])))
        return out.to(dtype)

    def _attend_block(self, layer: int, seg: dict, q):
        """Attention of one segment's queries over its block of rows, read in place."""
        (lo, hi), span, place = seg["block"], seg["span"], seg["place"]
        keys, values = self.k[layer, lo:hi, :, :span], self.v[layer, lo:hi, :, :span]
        if place is not None:  # rows of the block outside the batch get zero queries, outputs dropped
            q_block = q.new_zeros((hi - lo, *q.shape[1:]))
            q_block[place] = q
            q = q_block
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=seg["mask"])
        return y if place is None else y[place]


def visible(slots, span: int):
    """(B, T, span) bool: query t of row b sees slots 0 .. slots[b, t]."""
    return torch.arange(span)[None, None, :] <= slots[:, :, None]


# ---------------------------------------------------------------------------------------------
# The model

class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        cos, sin = rotary_table(config.n_embd // config.n_head, config.context, config.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights()

    def init_weights(self):
        """All initialization in one place: every Linear and the embedding ~ N(0, 0.02); the two
        projections that write into the residual stream (attention out, MLP down) are scaled by
        1/sqrt(2 * n_layer) so the stream's variance does not grow with depth (GPT-2); RMSNorm
        weights are 1."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.down):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def forward(self, idx, targets=None, kv_cache: KVCache | None = None, rows=None, n_new=None,
                reduction: str = "mean", last_only: bool = False, temperature: float = 1.0):
        """idx (B, T) token ids.

        - targets (B, T), -1 where no loss: returns the mean loss, or with reduction="none" the
          log-probability of each target (0 where the target is -1), shape (B, T).
        - kv_cache, rows (B,): append idx to those cache rows and return logits (B, T, V), or
          (B, V) at each row's last new token with last_only=True. n_new (B,) says how many of the
          T tokens are real for each row (ragged prefill; the rest is padding on the right);
          default all T. The rows' lengths grow by n_new.
        - neither: logits (B, T, V) of a plain causal pass.
        With targets, `temperature` scores them under softmax(logits / temperature): the
        distribution RL sampled from at that temperature.
        """
        B, T = idx.shape
        device = idx.device
        cache_args = {}
        if kv_cache is None:  # every row starts at position 0: one table slice, broadcast
            if T > self.config.context:
                raise ValueError(f"position {T - 1} is beyond the context of {self.config.context}")
            cos, sin = self.cos[None, :T, None], self.sin[None, :T, None]  # (1, T, 1, D/2)
        else:  # each row continues from its own length, planned on the host
            rows = [int(r) for r in rows]
            starts = kv_cache.lengths[rows].tolist()
            if max(starts) + T > kv_cache.max_len:
                raise ValueError(f"a row would exceed the cache's {kv_cache.max_len} slots")
            if max(starts) + T > self.config.context:
                raise ValueError(f"position {max(starts) + T - 1} is beyond the context of {self.config.context}")
            plan = kv_cache.plan(rows, starts, T)  # once for all layers
            positions = plan["slots"].to(device, non_blocking=True)  # a token's slot is its position
            # (B, T, D/2) -> (B, T, 1, D/2): the same angle for every head
            cos, sin = self.cos[positions][:, :, None], self.sin[positions][:, :, None]
            cache_args = dict(cache=kv_cache, plan=plan)
        x = self.embed(idx)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, layer=layer, **cache_args) if cache_args else block(x, cos, sin)
        x = self.norm(x)

        if kv_cache is not None:
            n_new = [T] * B if n_new is None else [int(n) for n in n_new]
            kv_cache.lengths[rows] = torch.tensor(starts) + torch.tensor(n_new)
            if last_only:
                x = x[torch.arange(B, device=device), torch.tensor(n_new, device=device) - 1]  # (B, C)
            return self.head(x).float()
        logits = self.head(x).float()
        if targets is None:
            return logits
        if temperature != 1.0:
            logits = logits / temperature
        if reduction == "mean":
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        # flattened (B*T, V): a (B, V, T) view would make the softmax stride across memory (2.5x slower)
        logprobs = -F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,
                                    reduction="none")
        return logprobs.view(B, T)  # 0 where targets == -1

    # -- sizes ----------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, without the embedding and output head by default (the paper's count)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.embed.weight.numel() + self.head.weight.numel()
        return total

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6 per parameter (forward + backward, head included) plus
        attention's 12 * layers * width * (average keys attended, seq_len / 2 when causal)."""
        T = seq_len or self.config.context
        c = self.config
        return 6 * self.num_params(non_embedding=False) + 12 * c.n_layer * c.n_embd * T / 2


# ---------------------------------------------------------------------------------------------
# Devices

def pick_device(override: str | None = None) -> torch.device:
    """cuda, then mps, then cpu, unless `override` names one; ValueError for a device that is
    not there."""
    available = {"cuda": torch.cuda.is_available(),  # in order of preference
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
                 "cpu": True}
    if not override:
        return torch.device(next(kind for kind, there in available.items() if there))
    try:
        device = torch.device(override)
    except RuntimeError:
        raise ValueError(f"unknown --device {override!r}; use cpu, cuda or mps") from None
    if not available.get(device.type, False):
        raise ValueError(f"--device {override}: no {device.type} device here; use "
                         + " or ".join(kind for kind, there in available.items() if there))
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA; fp32 elsewhere (bf16 matmul on a CPU is far slower than fp32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# Checkpoints: the one place they are written and read

def save_checkpoint(path: str, model: GPT, tokenizer, args: dict | None = None, **extra) -> None:
    """Write config, weights, tokenizer identity, the run's arguments and any extra state
    (optimizer, step, ...) to `path`, atomically: a temporary file renamed when complete."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {"config": asdict(model.config), "model": model.state_dict(),
             "tokenizer": tokenizer.identity(), "args": dict(args or {}), **extra}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    clear_stale_temporaries(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def checkpoint_path(path: str) -> str:
    """A run folder or a checkpoint file -> the checkpoint file; ValueError naming the fix."""
    ckpt = os.path.join(path, "ckpt.pt") if os.path.isdir(path) else path
    if not os.path.isfile(ckpt):
        raise ValueError(f"no checkpoint at {ckpt}; train one first, e.g. "
                         f"`python train_sft.py --mode apr --preset tiny --out {os.path.dirname(ckpt) or path}`")
    return ckpt


# The largest config a checkpoint may ask for: far beyond the paper's model, and small enough that
# a corrupt or hostile file is refused before anything is built from it.
CONFIG_LIMITS = {"vocab_size": 1 << 20, "n_layer": 256, "n_embd": 1 << 14, "n_head": 1 << 10,
                 "mlp_hidden": 1 << 16, "context": 1 << 17}


def config_from(fields, path: str) -> GPTConfig:
    """The model config a checkpoint records; ValueError for unknown fields or absurd sizes."""
    if not isinstance(fields, dict):
        raise ValueError(f"checkpoint {path}: its config is not a table of fields")
    unknown = sorted(set(fields) - set(GPTConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"checkpoint {path}: unknown config fields {unknown}")
    for name, top in CONFIG_LIMITS.items():
        value = fields.get(name, getattr(GPTConfig, name))
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise ValueError(f"checkpoint {path}: config {name} {value!r} is not an integer in 1..{top}")
    try:
        return GPTConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {path}: {error}") from None


def read_checkpoint(path: str, device="cpu") -> dict:
    """The dict in the checkpoint file `path`, checked to be this project's: a dict with a config,
    weights and a tokenizer identity; ValueError naming the file otherwise."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # empty, truncated, random or foreign bytes: torch raises many kinds
        if isinstance(error, EOFError):
            reason = "empty, or cut short"
        elif isinstance(error, pickle.UnpicklingError):  # weights_only refuses anything but tensors and tables
            reason = "not a torch checkpoint, or one that holds more than tensors and tables"
        elif "zip archive" in str(error):
            reason = "a damaged or truncated file"
        else:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:100]
        raise ValueError(f"{path} is not a readable checkpoint ({reason})") from None
    missing = [k for k in ("config", "model", "tokenizer") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a checkpoint of this project (no {', '.join(missing)})")
    if not isinstance(state.get("args", {}), dict):
        raise ValueError(f"{path}: its run arguments are not a table")
    return state


def load_checkpoint(path: str, device="cpu", expect_config: GPTConfig | None = None,
                    expect_tokenizer: dict | None = None):
    """Rebuild (model, tokenizer, checkpoint dict) from `path`, a run folder or its checkpoint
    file. ValueError, saying why, for a missing or unreadable file, a config with unknown fields,
    absurd sizes or weights of other shapes, or a config or tokenizer other than the expected ones."""
    from tokenizer import Tokenizer  # the tokenizer is part of a checkpoint's identity
    path = checkpoint_path(path)
    state = read_checkpoint(path, device)
    config = config_from(state["config"], path)
    if expect_config is not None and config != expect_config:
        diff = {k: (v, getattr(config, k)) for k, v in asdict(expect_config).items() if getattr(config, k) != v}
        raise ValueError(f"checkpoint {path} has another model config (expected, found): {diff}")
    try:
        tokenizer = Tokenizer.from_identity(state["tokenizer"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"checkpoint {path}: its tokenizer identity is unreadable ({error})") from None
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: {error}") from None
    if expect_tokenizer is not None and state["tokenizer"] != expect_tokenizer:
        raise ValueError(f"checkpoint {path} was trained with tokenizer {state['tokenizer']}, "
                         f"not {expect_tokenizer}")
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"checkpoint {path}: model vocabulary {config.vocab_size} != tokenizer's "
                         f"{tokenizer.vocab_size}")
    check_weights(state["model"], config, path)
    model = GPT(config)
    model.load_state_dict(state["model"])
    return model.to(device), tokenizer, state


def check_weights(weights, config: GPTConfig, path: str) -> None:
    """ValueError unless `weights` holds exactly the tensors of `config`'s model, with its shapes
    (checked against a model on the meta device, which allocates nothing)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
        raise ValueError(f"checkpoint {path}: its weights are not a table of tensors")
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if found != expected:
        wrong = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise ValueError(f"checkpoint {path}: weights do not fit its config ({len(wrong)} tensors differ, "
                         f"first {wrong[0]}: {found.get(wrong[0])} against {expected.get(wrong[0])})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print a preset's configuration and parameter counts.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model preset")
    args = parser.parse_args(argv)
    from tokenizer import Tokenizer
    config = preset(args.preset, vocab_size=Tokenizer().vocab_size)
    with torch.device("meta"):  # sizes only: no memory, no init time
        model = GPT(config)
    print(config)
    print(f"non-embedding parameters: {model.num_params() / 1e6:.1f}M, "
          f"all: {model.num_params(non_embedding=False) / 1e6:.1f}M, "
          f"training FLOPs per token at full context: {model.flops_per_token() / 1e6:.1f}M")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
