"""Checkpoint faults in one process: damaged files, resume fallback, stale temporary files,
permissions."""

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from vis_zoo.engine import AtomicDetectionCheckpointer
from vis_zoo.engine.checkpoint import DamagedCheckpointError
from vis_zoo.utils.io import remove_stale_temporary_files

IO_MODULE = os.path.join(os.path.dirname(__file__), "..", "..", "vis_zoo", "utils", "io.py")


class _Iteration:
    """Stands in for the trainer among the checkpointables: its state is the iteration."""

    def __init__(self):
        self.iteration = -1

    def state_dict(self):
        return {"iteration": self.iteration}

    def load_state_dict(self, state):
        self.iteration = state["iteration"]


def _checkpointer(save_dir, **kwargs):
    model = nn.Linear(3, 2)
    trainer = _Iteration()
    return (
        AtomicDetectionCheckpointer(model, str(save_dir), trainer=trainer, **kwargs),
        model,
        trainer,
    )


def _save_iterations(save_dir, iterations):
    ckpt, model, trainer = _checkpointer(save_dir)
    for it in iterations:
        trainer.iteration = it
        with torch.no_grad():
            model.bias.fill_(it)
        ckpt.save(f"model_{it:07d}")
        # distinct modification times, as checkpoints written iterations apart have
        mtime = 1_000_000 + 100 * it
        os.utime(save_dir / f"model_{it:07d}.pth", (mtime, mtime))


def _truncate(path, keep_fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return int(len(data) * keep_fraction)


@pytest.mark.parametrize("keep_fraction", [0.0, 0.5, 0.995])
def test_truncated_weights_name_the_file_and_its_size(tmp_path, keep_fraction):
    _save_iterations(tmp_path, [1])
    weights = tmp_path / "model_0000001.pth"
    size = _truncate(weights, keep_fraction)
    ckpt, _, _ = _checkpointer(tmp_path / "other")
    with pytest.raises(DamagedCheckpointError) as info:
        ckpt.resume_or_load(str(weights), resume=False)  # how the trainer loads MODEL.WEIGHTS
    message = str(info.value)
    assert (
        str(weights) in message
        and f"({size:,} bytes)" in message
        and "damaged or incomplete" in message
    )


def test_a_file_that_is_not_a_checkpoint_is_named_too(tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_text("not a checkpoint")
    with pytest.raises(DamagedCheckpointError, match=f"{weights} \\(16 bytes\\)"):
        AtomicDetectionCheckpointer(nn.Linear(3, 2)).load(str(weights))


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, caplog):
    _save_iterations(tmp_path, [1, 3, 5])
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000005.pth"
    _truncate(tmp_path / "model_0000005.pth")
    ckpt, model, trainer = _checkpointer(tmp_path)
    with caplog.at_level(logging.WARNING):
        ckpt.resume_or_load("", resume=True)
    assert trainer.iteration == 3 and model.bias.tolist() == [3.0, 3.0]
    warning = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Resumed from")]
    assert len(warning) == 1
    assert (
        str(tmp_path / "model_0000003.pth") in warning[0]
        and str(tmp_path / "model_0000005.pth") in warning[0]
    )


def test_resume_order_is_most_recently_written_not_the_name(tmp_path):
    # A finished run (model_final at iteration 3) resumed with a longer schedule writes
    # model_0000005,
    # then model_0000007; model_final is now the oldest checkpoint.
    _save_iterations(tmp_path, [3])
    os.replace(tmp_path / "model_0000003.pth", tmp_path / "model_final.pth")
    _save_iterations(tmp_path, [5, 7])
    _truncate(tmp_path / "model_0000007.pth")
    ckpt, _, trainer = _checkpointer(tmp_path)
    assert [os.path.basename(p) for p in ckpt.resume_candidates()] == [
        "model_0000007.pth",
        "model_0000005.pth",
        "model_final.pth",
    ]
    ckpt.resume_or_load("", resume=True)
    assert trainer.iteration == 5


def test_resume_skips_a_missing_last_checkpoint_file(tmp_path, caplog):
    _save_iterations(tmp_path, [1, 3])
    os.remove(tmp_path / "model_0000003.pth")
    ckpt, _, trainer = _checkpointer(tmp_path)
    with caplog.at_level(logging.WARNING):
        ckpt.resume_or_load("", resume=True)
    assert trainer.iteration == 1
    assert any("model_0000003.pth (missing)" in r.getMessage() for r in caplog.records)


def test_resume_with_no_loadable_checkpoint_is_an_error_naming_each(tmp_path):
    _save_iterations(tmp_path, [1, 3])
    for name in ("model_0000001.pth", "model_0000003.pth"):
        _truncate(tmp_path / name)
    ckpt, _, trainer = _checkpointer(tmp_path)
    with pytest.raises(DamagedCheckpointError, match="Cannot resume from") as info:
        ckpt.resume_or_load(str(tmp_path / "init.pth"), resume=True)
    assert str(tmp_path / "model_0000001.pth") in str(info.value)
    assert str(tmp_path / "model_0000003.pth") in str(info.value)
    assert trainer.iteration == -1


def test_resume_without_last_checkpoint_loads_the_weights_as_detectron2_does(tmp_path):
    _save_iterations(tmp_path / "init", [2])
    ckpt, model, trainer = _checkpointer(tmp_path / "run")
    ckpt.resume_or_load(str(tmp_path / "init" / "model_0000002.pth"), resume=True)
    assert (
        model.bias.tolist() == [2.0, 2.0] and trainer.iteration == -1
    )  # weights only, iteration 0


# ------------------------------------------------------------------------------ temporary files
_PAUSED_WRITER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("vis_zoo_io", sys.argv[1])
    io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(io)
    with io.atomic_open(sys.argv[2], "wb") as f:
        f.write(b"x" * 4096)
        f.flush()
        print("writing", flush=True)
        time.sleep(120)
""")


def _temporary_files(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def test_a_live_writers_file_is_kept_and_a_killed_writers_file_removed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_WRITER, IO_MODULE, str(tmp_path / "model_0000009.pth")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        [tmp] = _temporary_files(tmp_path)
        assert tmp.startswith(".model_0000009.pth.")
        assert remove_stale_temporary_files(str(tmp_path), ["*.pth"]) == []  # still being written
        assert _temporary_files(tmp_path) == [tmp]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert remove_stale_temporary_files(str(tmp_path), ["*.pth"]) == [str(tmp_path / tmp)]
    assert os.listdir(tmp_path) == []


def test_checkpointer_removes_only_its_stale_files_when_it_writes(tmp_path):
    ours = [
        ".model_0000005.pth.3k9z2x1a.tmp",
        ".last_checkpoint.0a1b2c3d4e5f.tmp",
        ".model_final.pth.a.tmp",
    ]
    others = [".metrics.json.0a1b2c3d4e5f.tmp", "notes.tmp", ".model_0000005.pth"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"partial")
    os.makedirs(tmp_path / "inference")
    (tmp_path / "inference" / ".model_0000001.pth.abc.tmp").write_bytes(b"partial")

    # rank 1 of a two-process run does not write, so it leaves the folder alone
    _checkpointer(tmp_path, save_to_disk=False)
    assert _temporary_files(tmp_path) == sorted(
        ours + ["notes.tmp", ".metrics.json.0a1b2c3d4e5f.tmp"]
    )
    # the writer cleans at start-up
    ckpt, _, _ = _checkpointer(tmp_path)
    assert _temporary_files(tmp_path) == sorted([".metrics.json.0a1b2c3d4e5f.tmp", "notes.tmp"])
    assert os.listdir(tmp_path / "inference") == [
        ".model_0000001.pth.abc.tmp"
    ]  # not its subfolders
    # ... and after each save
    (tmp_path / ours[0]).write_bytes(b"partial")
    ckpt.save("model_0000007")
    assert _temporary_files(tmp_path) == sorted([".metrics.json.0a1b2c3d4e5f.tmp", "notes.tmp"])


# ----------------------------------------------------------------------------------- permissions
@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_umask_permissions(tmp_path, umask):
    from vis_zoo.evaluation.results import write_results

    expected = 0o666 & ~umask
    with open(tmp_path / "plain.txt", "w") as f:  # what any other file gets
        f.write("x")
    assert _mode(tmp_path / "plain.txt") == expected
    ckpt, _, _ = _checkpointer(tmp_path)
    ckpt.save("model_0000001")
    json_path, zip_path = write_results([], str(tmp_path / "inference"))
    for path in (tmp_path / "model_0000001.pth", tmp_path / "last_checkpoint", json_path, zip_path):
        assert _mode(path) == expected, f"{path}: {oct(_mode(path))} != {oct(expected)}"
    assert json.load(open(json_path)) == []
