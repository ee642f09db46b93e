"""
The tokenizer of search traces: a `tiktoken.Encoding` built here from code, with no download.

    python tokenizer.py --demonstrations data/p2k_apr.jsonl data/p2k_sosp.jsonl   # measure
    python tokenizer.py --demonstrations data/p2k_apr.jsonl --windows 384 512     # fit a window

Vocabulary, in rank order (the same on every machine, since it is rebuilt from this file):
1. all 256 single bytes (any Unicode text encodes: unknown characters fall back to bytes);
2. the fixed phrases of the trace format (`PHRASES`: "Exploring Operation: ",
   ", Resulting Numbers: [", "Generated Node #", the spawn/join lines, ...), one token each;
3. with `numbers="whole"`, every number below `max_number` as one token; with
   `numbers="digits"` (the paper's tokenizer), numbers are written digit by digit;
4. special tokens BOS, EOS, PAD.

The split of text into pieces is tiktoken's regular expression: a phrase, else a number (or a
digit), else one character. tiktoken looks a whole piece up before merging bytes, so a phrase or
a number in the vocabulary is always one token; a larger number (say 12345 with max_number
1000) is merged from the number tokens it contains ("123", "45").

Why this design: the phrases cut a sequence to under a third of its bytes, and whole numbers
save another 28% over digits and, more to the point for a small model, turn "45-34=11" into
five tokens whose arithmetic is one lookup per step rather than a carry over digit positions.
Numbers below 1,000 cover the task's inputs and nearly every number the traces write
(docs/experiments.md, "The tokenizer", has the measurements). `numbers="digits"` (the paper's
way) stays a parameter, to compare the two by training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re

import tiktoken

# the most whole numbers a vocabulary may hold: far above the task's, and a bound on the memory
# and time of building one from a checkpoint's identity
MAX_NUMBER_TOKENS = 100_000

# The fixed words of the trace format (docs/how-it-works.md), each one token. Pieces are matched
# longest first, so a long phrase wins over a shorter one that starts the same way.
PHRASES = [
    # serial search lines
    "Current State: ", ":[", "], Operations: [", "]\n", "']\n", "Exploring Operation: ",
    ", Resulting Numbers: [", "Generated Node #", ": ", "] Operation: ", " unequal: No Solution\n",
    " equal: Goal Reached\n", "Moving to Node #", "No solution found.\n",
    # SoS+ sub searches
    "Start Sub Search at level ", ": Moving to Node #", "Exit Sub Search at level ",
    "No solution found in sub search\n",
    # APR spawn and join blocks
    "<Calling Sub Searches>\n", "<Start Sub Search ", " at level ", "> Moving to Node #",
    "<End Calling Sub Searches>\n", "<Sub Searches>\n", "<Goal Reached in Sub Search ",
    "<No Solution in Sub Search ", " at Node #", ">\n", "<End Sub Searches>\n",
    # conditioning prefixes, and list punctuation
    "Token Budget: ", "Sub Call Budget: ", ", ", "', '", "'",
]
SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>"]
NUMBER_MODES = ("whole", "digits")


class Tokenizer:
    """A thin wrapper over a locally built tiktoken.Encoding, with our own special token ids."""

    def __init__(self, numbers: str = "whole", max_number: int = 1000):
        if numbers not in NUMBER_MODES:
            raise ValueError(f"numbers must be one of {NUMBER_MODES}, not {numbers!r}")
        if numbers == "whole" and not (isinstance(max_number, int) and 10 <= max_number <= MAX_NUMBER_TOKENS):
            raise ValueError(f"max_number must be an integer in 10..{MAX_NUMBER_TOKENS:,} (got {max_number!r})")
        self.numbers, self.max_number = numbers, max_number if numbers == "whole" else 10
        ranks = {bytes([b]): b for b in range(256)}
        pieces = list(PHRASES)
        if numbers == "whole":
            pieces += [str(n) for n in range(10, max_number)]  # 0..9 are single bytes already
        for piece in pieces:
            ranks.setdefault(piece.encode(), len(ranks))
        specials = {name: len(ranks) + i for i, name in enumerate(SPECIALS)}
        number = r"\d+" if numbers == "whole" else r"\d"
        phrases = "|".join(re.escape(p) for p in sorted(PHRASES, key=len, reverse=True))
        self.encoding = tiktoken.Encoding(name=self.name, pat_str=rf"{phrases}|{number}|[\s\S]",
                                          mergeable_ranks=ranks, special_tokens=specials)
        self.bos_id, self.eos_id, self.pad_id = (specials[s] for s in SPECIALS)
        self.vocab_size = self.encoding.n_vocab

    @property
    def name(self) -> str:
        return f"trace-{self.numbers}" + (f"{self.max_number}" if self.numbers == "whole" else "")

    def identity(self) -> dict:
        """What a checkpoint records: the settings, and a hash of the vocabulary they produce."""
        vocab = b"\x00".join(self.encoding.decode_single_token_bytes(i) for i in range(self.vocab_size))
        return {"numbers": self.numbers, "max_number": self.max_number, "vocab_size": self.vocab_size,
                "sha256": hashlib.sha256(vocab).hexdigest()[:16]}

    @classmethod
    def from_identity(cls, identity: dict) -> "Tokenizer":
        """Rebuild the tokenizer a checkpoint was trained with; refuse one this code cannot rebuild."""
        tokenizer = cls(identity["numbers"], identity["max_number"])
        if tokenizer.identity() != identity:
            raise ValueError(f"tokenizer mismatch: the checkpoint's vocabulary {identity} is not the one "
                             f"this code builds ({tokenizer.identity()}); was tokenizer.py changed?")
        return tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of text. Special-token names in the text are ordinary text, never specials."""
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, ids) -> str:
        """Text of token ids (special tokens print as their names); ValueError for unknown ids."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is out of range for a vocabulary of {self.vocab_size}")
        return self.encoding.decode(ids)

    def render(self, segments: list[tuple[str, bool]], bos: bool = True, eos: bool = True):
        """A training sequence from (text, trained) segments: ids, and a mask that is 1 on the
        tokens the model is trained to write. BOS is context; EOS is trained if the last segment
        is (the model must learn to stop). Segments are encoded one by one, as the runtime does
        when it injects text between what the model wrote."""
        ids, mask = ([self.bos_id], [0]) if bos else ([], [])
        for text, trained in segments:
            piece = self.encode(text)
            ids += piece
            mask += [int(trained)] * len(piece)
        if eos:
            ids.append(self.eos_id)
            mask.append(int(segments[-1][1]) if segments else 0)
        return ids, mask


def measure(paths: list[str], per_file: int = 1000) -> None:
    """Print tokens per sequence and chars per token for the candidate designs."""
    texts = []
    for path in paths:
        with open(path) as f:
            for k, line in enumerate(f):
                if k == per_file:
                    break
                record = json.loads(line)
                if "trace_dict" in record:
                    from search import thread_texts
                    texts += thread_texts(record["trace_dict"])
                else:
                    texts.append(record["search_path"])
    chars = sum(len(t) for t in texts)
    candidates = [("bytes only", None), ("phrases, digits one by one", Tokenizer("digits")),
                  ("phrases, whole numbers < 1,000", Tokenizer("whole", 1000)),
                  ("phrases, whole numbers < 10,000", Tokenizer("whole", 10000))]
    print(f"{len(texts):,} sequences from {paths}")
    print(f"| {'tokenizer':<32}| vocab  | tokens per sequence | chars per token |")
    for name, tok in candidates:
        tokens = sum(len(t.encode()) if tok is None else len(tok.encode(t)) for t in texts) + 2 * len(texts)
        vocab = 259 if tok is None else tok.vocab_size
        print(f"| {name:<32}| {vocab:>6,} | {tokens / len(texts):>19,.0f} | {chars / (tokens - 2 * len(texts)):>15.2f} |")


def fits_windows(paths: list[str], windows: list[int], per_file: int = 1000) -> None:
    """Print, per demonstration file, the share of problems the solver solved, and the share it
    solved with every LM call (as training renders it: BOS and EOS included) fitting a context
    window W. This is how a context window and the solvers' beams are chosen together: a larger
    beam solves more problems but writes longer threads, and a thread that outgrows its window
    fails."""
    from search import lm_calls, record_trace  # search.py needs no tokenizer; only this measurement needs both
    tok = Tokenizer()
    print("| demonstrations | solved | longest thread, median / p90 | "
          + " | ".join(f"solved within {w}" for w in windows) + " | tokens per problem, all calls | written by the model |")
    for path in paths:
        solved, longest, tokens, written = [], [], 0, 0
        with open(path) as f:
            for k, line in enumerate(f):
                if k == per_file:
                    break
                record = json.loads(line)
                rendered = [tok.render(segments, eos=ends) for segments, ends in lm_calls(record_trace(record))]
                longest.append(max(len(ids) for ids, _ in rendered))
                tokens += sum(len(ids) for ids, _ in rendered)  # what training computes, each call once
                written += sum(sum(mask) for _, mask in rendered)  # what it trains on
                solved.append(bool(record["solved"]))
        order = sorted(longest)
        within = [sum(s and n <= w for s, n in zip(solved, longest)) / len(solved) for w in windows]
        print(f"| {path} | {sum(solved) / len(solved):.1%} | {order[len(order) // 2]} / {order[int(0.9 * len(order))]} | "
              + " | ".join(f"{x:.1%}" for x in within) + f" | {tokens / len(solved):,.0f} | {written / tokens:.0%} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Measure tokenizer designs on demonstrations from search.py, "
                                                 "or (--windows) how many demonstrations fit a context window.")
    parser.add_argument("--demonstrations", nargs="+", required=True, help="demonstration .jsonl files")
    parser.add_argument("--per-file", type=int, default=1000, help="demonstrations read from each file")
    parser.add_argument("--windows", type=int, nargs="+", metavar="W",
                        help="instead: the share of problems solved with every thread within W tokens")
    args = parser.parse_args(argv)
    if args.windows:
        fits_windows(args.demonstrations, args.windows, args.per_file)
    else:
        measure(args.demonstrations, args.per_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
