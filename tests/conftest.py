"""Shared settings of the test suite."""

# an SFT run small enough for a test: 40 problems, a one-layer model, a few steps, no compiling
TINY_SFT_RUN = ["--preset", "tiny3", "--n-train", "40", "--n-val", "8", "--n-layer", "1", "--n-embd", "32",
                "--context", "512", "--micro-tokens", "1024", "--batch-tokens", "2048", "--workers", "1", "--quiet",
                "--eval-problems", "0", "--no-compile"]
