"""Shared settings and helpers of the test suite."""

import os
import socket
import subprocess
import sys
import tempfile

# an SFT run small enough for a test: 40 problems, a one-layer model, a few steps, no compiling
TINY_SFT_RUN = ["--preset", "tiny", "--n-train", "40", "--n-val", "8", "--n-layer", "1", "--n-embd", "32",
                "--context", "512", "--micro-tokens", "1024", "--batch-tokens", "2048", "--workers", "1", "--quiet",
                "--eval-problems", "0", "--no-compile"]


def run_torchrun(script_args, cwd, timeout=300):
    """Run `torchrun --nproc_per_node=2 <script_args>` on CPU processes talking gloo over loopback,
    and return (exit code, stderr), the code None if it ran past `timeout` seconds.

    Written so that no environment can hang the suite: the rendezvous port is a free one picked
    now (a fixed port another run still holds would stall or fail the rendezvous), gloo is pinned
    to loopback (resolving the hostname can hang on a machine with no network), the output goes to
    a file rather than a pipe (torchrun's workers live in their own process groups, so a pipe they
    hold could outlive torchrun), and on timeout torchrun gets SIGTERM, which it passes on to its
    workers, then SIGKILL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}"] + script_args
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            returncode = None
        stderr.seek(0)
        text = stderr.read()
    return returncode, text if returncode is not None else f"torchrun ran past {timeout} s\n{text}"


def torchrun_failure(stderr: str) -> str:
    """What to show when a torchrun test fails: the workers' own error lines first (a worker that
    aborts prints its reason long before torchrun's report, which fills the end of stderr), then
    the end of stderr."""
    markers = ("Error", "error", "terminate called", "what()", "Exception", "Assertion")
    causes = [line for line in stderr.splitlines()
              if any(m in line for m in markers) and "error_file" not in line][:20]  # not torchrun's own report
    return "\n".join(["error lines:", *causes, "...end of stderr:", stderr[-1500:]])
