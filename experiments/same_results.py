"""
Do two trees of runs hold the same results? Every checkpoint's tensors compared bit for bit, and
every JSON report and run record compared field by field, leaving out what measures time.

    python experiments/same_results.py OLD_ROOT NEW_ROOT      # e.g. two copies of out/smoke

A refactor that must change no result is checked this way: run the same commands before and
after it into two folders, then compare them. Exit status 0 when everything matches.
"""

from __future__ import annotations

import json
import math
import os
import sys

import torch

# fields that measure wall time (or hold a path that names the folder), not results
TIMING = {"latency", "greedy_latency", "seconds", "eval_seconds", "wall_seconds", "stage_seconds", "rollout_seconds",
          "train_seconds"}


def differences(a, b, where: str, ignore: set) -> list[str]:
    """Paths at which two JSON-like values differ (floats must be equal too, NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in TIMING or key in ignore:
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'new' if key not in a else 'old'}")
            else:
                out += differences(a[key], b[key], f"{where}.{key}", ignore)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items vs {len(b)}"]
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{k}]", ignore)]
    if torch.is_tensor(a) and torch.is_tensor(b):
        return [] if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) else [f"{where}: tensors differ"]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def compare(old_root: str, new_root: str, ignore: set) -> list[str]:
    out, seen = [], 0
    for folder, _, files in os.walk(old_root):
        for name in sorted(files):
            old = os.path.join(folder, name)
            new = os.path.join(new_root, os.path.relpath(old, old_root))
            if not (name.endswith(".json") or name.endswith(".pt")):
                continue
            if not os.path.exists(new):
                out.append(f"{new}: missing")
                continue
            seen += 1
            if name.endswith(".pt"):
                a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (old, new))
            else:
                a, b = (json.load(open(p)) for p in (old, new))
            out += differences(a, b, os.path.relpath(old, old_root), ignore)
    print(f"compared {seen} files under {old_root} and {new_root}")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python experiments/same_results.py OLD_ROOT NEW_ROOT [FIELD_TO_IGNORE ...]", file=sys.stderr)
        return 2
    found = compare(argv[0], argv[1], set(argv[2:]))
    for line in found:
        print(line)
    print("same results" if not found else f"{len(found)} differences")
    return 0 if not found else 1


if __name__ == "__main__":
    sys.exit(main())
