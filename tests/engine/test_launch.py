"""vis_zoo.engine.launch: each spawned worker destroys its process group before the interpreter
exits."""

import atexit
import os

import torch.distributed as dist


def _record_group_state_at_exit(record_dir: str) -> None:
    """Worker body: at interpreter exit (after the launcher's shutdown) write whether a group is
    still alive."""
    from detectron2.utils import comm

    rank = comm.get_rank()
    comm.all_gather(
        rank
    )  # use the groups, as training and evaluation do (creates comm's cached gloo group)

    def _write() -> None:
        with open(os.path.join(record_dir, f"rank{rank}.txt"), "w") as f:
            f.write(str(dist.is_initialized()))

    atexit.register(_write)


def test_spawned_workers_end_with_the_process_group_destroyed(tmp_path):
    from vis_zoo.engine.launch import launch

    port = 20000 + (os.getpid() + 7) % 20000
    launch(
        _record_group_state_at_exit, 2, dist_url=f"tcp://127.0.0.1:{port}", args=(str(tmp_path),)
    )
    # Left alive, gloo's threads are torn down during interpreter finalisation, which can abort a
    # worker.
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["False", "False"]


def test_single_process_runs_in_place_and_shutdown_is_a_no_op():
    from vis_zoo.engine.launch import launch, shut_down_process_group

    assert (
        launch(lambda a, b: a + b, 1, args=(2, 3)) == 5
    )  # not picklable: proves nothing was spawned
    shut_down_process_group()  # no group initialised: must not raise
    assert not dist.is_initialized()
