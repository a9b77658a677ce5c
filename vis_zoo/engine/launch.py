"""detectron2's `launch`, plus a clean shutdown of the process group at the end of each worker.

detectron2's worker returns from `main_func` with the process group still alive, so the gloo worker
threads are torn down during interpreter finalisation. On a loaded machine a rank that finishes
first (e.g. rank 1, whose `evaluate()` returns at once while rank 0 is still scoring) can then die
with SIGABRT ("terminate called without an active exception"), and `torch.multiprocessing.spawn`
turns that into a failed run (pytorch/pytorch#179291 describes the mechanism). Each worker here
waits for the others at a barrier and destroys the group explicitly while the interpreter is still
whole.
"""

import functools
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch.distributed as dist
from detectron2.engine import launch as _detectron2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm

__all__ = ["launch", "shut_down_process_group"]


def shut_down_process_group() -> None:
    """Barrier, then destroy the default process group (and detectron2's cached gloo groups with
    it).

    A no-op in a single process or when no group was initialised, so a worker may call it
    unconditionally.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_world_size() > 1:
        comm.synchronize()  # no rank tears down its connections while a peer may still use them
    dist.destroy_process_group()  # with no argument: every group, including the ones comm created


def _worker_entry(main_func: Callable[..., Any], *args: Any) -> Any:
    """What each spawned worker runs: `main_func(*args)`, then the orderly shutdown. After an
    exception there is no barrier: the peers may never reach it, and the exception is what the user
    must see."""
    result = main_func(*args)
    shut_down_process_group()
    return result


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Same arguments and behaviour as `detectron2.engine.launch`; every spawned worker ends with
    `shut_down_process_group()` after `main_func` returns. With one process in total nothing is
    spawned and `main_func(*args)` runs in this process, as in detectron2."""
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    # functools.partial of a module-level function pickles by reference, as spawn requires.
    return _detectron2_launch(
        functools.partial(_worker_entry, main_func),
        num_gpus_per_machine,
        num_machines=num_machines,
        machine_rank=machine_rank,
        dist_url=dist_url,
        args=tuple(args),
        timeout=timeout,
    )
