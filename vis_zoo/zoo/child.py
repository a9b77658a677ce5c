"""How the benchmark runs one measurement in a fresh process and reads its result back.

The parent calls `run_child(kind, spec)`, which starts ``python -m vis_zoo.zoo.child --child KIND
SPEC_JSON``. The child runs the measurement named KIND (`vis_zoo.zoo.stages.CHILD_KINDS`) on the
JSON `spec` and prints its result as one line starting with `MARKER`; everything else it prints is
ignored. A fresh process per measurement means the peak memory is that measurement's own, and a
method that fails to build, crashes or runs out of memory only loses its own cell.

On CPU a watchdog thread stops the child (exit code 3) as soon as its resident memory passes
``spec["mem_limit_gb"]``, after printing an ``{"error", "over_budget": True}`` result, so a heavy
config never takes the machine's memory.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable, Dict, Optional

from .memory import current_rss_gb

MARKER = "@@VIS_ZOO_BENCHMARK@@ "

__all__ = ["MARKER", "child_main", "emit", "run_child", "short_error", "start_memory_watchdog"]


def short_error(e: BaseException) -> str:
    """`Type: message` on one line, at most 400 characters."""
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text[:400]


def emit(obj: dict) -> None:
    """Print a result line for the parent."""
    print(MARKER + json.dumps(obj), flush=True)


def start_memory_watchdog(limit_gb: float, interval_s: float = 0.02) -> None:
    """Stop this process (exit code 3) as soon as its resident memory passes `limit_gb`, so a probe
    that is over the budget never takes the machine's memory (checked every `interval_s`)."""

    def watch():
        while True:
            rss = current_rss_gb()
            if rss > limit_gb:
                emit(
                    {
                        "error": f"resident memory {rss:.2f} GB passed the limit of {limit_gb:.2f} "
                        "GB",
                        "over_budget": True,
                        "peak_gb": rss,
                    }
                )
                os._exit(3)
            time.sleep(interval_s)

    threading.Thread(target=watch, daemon=True).start()


def child_main(
    kind: str, spec_json: str, handlers: Optional[Dict[str, Callable[[dict], dict]]] = None
) -> int:
    """Run one measurement in this process and print its result line; the exit code."""
    if handlers is None:
        from .stages import CHILD_KINDS as handlers
    spec = json.loads(spec_json)
    if spec.get("mem_limit_gb") and not spec["device"].startswith("cuda"):
        start_memory_watchdog(spec["mem_limit_gb"])
    try:
        result = handlers[kind](spec)
    except Exception as e:
        traceback.print_exc()
        emit({"error": short_error(e)})
        return 1
    emit(result)
    return 0


def run_child(
    kind: str, spec: dict, *, threads: int, timeout_s: float, cwd: Optional[str] = None
) -> dict:
    """Run `python -m vis_zoo.zoo.child --child KIND SPEC` and return its result dict; failures
    (exception, crash, kill, timeout) come back as {"error": ...}."""
    cmd = [sys.executable, "-m", "vis_zoo.zoo.child", "--child", kind, json.dumps(spec)]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONWARNINGS="ignore",
    )
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "timeout": True}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {
        "error": f"exit code {proc.returncode}: {' | '.join(tail)[-400:]}",
        # SIGKILL: most likely the kernel's OOM killer
        "over_budget": proc.returncode in (-9, 137),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="internal: one benchmark measurement")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC_JSON"), required=True)
    args = parser.parse_args()
    sys.exit(child_main(*args.child))
