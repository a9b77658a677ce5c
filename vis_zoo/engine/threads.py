"""How many CPU threads a run's PyTorch operators use, chosen here rather than left to the machine.

PyTorch's default is one thread per core. On a 2-core machine that other jobs also load, its
OpenMP threads wait for each other at every operator: training `configs/vita/synthetic_R18.yaml`
took 12.1 s per iteration with 2 threads against 1.3 s with 1, inference 195 ms per frame against
37 ms (interleaved measurements in one process, load average 10; docs/training.md). One thread
loses at most a factor of the core count when the machine is idle and avoids that collapse when it
is not, so it is the default on CPU.

`VIS_ZOO_CPU_THREADS=N` chooses N; `OMP_NUM_THREADS` set in the environment is respected as well.
"""

import logging
import os

import torch

__all__ = ["DEFAULT_CPU_THREADS", "cpu_threads", "configure_cpu_threads"]

logger = logging.getLogger("vis_zoo")

DEFAULT_CPU_THREADS = 1


def cpu_threads() -> int:
    """The thread count for CPU work: $VIS_ZOO_CPU_THREADS, else $OMP_NUM_THREADS, else 1.

    Raises ValueError naming the variable when it is not a positive integer."""
    for variable in ("VIS_ZOO_CPU_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                threads = 0
            if threads < 1:
                raise ValueError(f"{variable}={value!r}: expected a positive number of threads")
            return threads
    return DEFAULT_CPU_THREADS


def configure_cpu_threads(device: str) -> int:
    """Set PyTorch's intra-op threads for a run on `device` (only on CPU); returns the count."""
    if str(device).startswith("cuda"):
        return torch.get_num_threads()
    threads = cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    logger.info(f"CPU threads: {threads}", extra={"file_only": True})  # the run summary shows it
    return threads
