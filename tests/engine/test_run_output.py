"""What a training run shows: a short terminal account (the details in log.txt, no colour codes in
a file or pipe) and one line on Ctrl-C saying how to resume."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.test_train_net import BASE_CONFIG, DRIVER, _overrides


def _command(out, max_iter, cache_root):
    return [
        sys.executable,
        DRIVER,
        "--config-file",
        BASE_CONFIG,
        *_overrides(out, max_iter, cache_root),
    ]


def test_terminal_shows_a_summary_and_log_txt_everything(synthetic_root, tmp_path):
    out = str(tmp_path / "run")
    proc = subprocess.run(
        _command(out, 2, synthetic_root),
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    terminal = proc.stdout + proc.stderr
    before_training = terminal[: terminal.index("Starting training")].splitlines()
    assert len(before_training) <= 25, "\n".join(before_training)
    assert "\033[" not in terminal  # a pipe is not a terminal: no colour codes
    for expected in (
        "Training MinimalVISModel for 2 iterations",
        "train: synthetic_vis_train (5 classes)",
        f"output folder: {out}",
        os.path.join(out, "model_final.pth"),
    ):
        assert expected in terminal
    for detail in ("Environment info", "Running with full config", "Model:"):
        assert detail not in terminal
    log = open(os.path.join(out, "log.txt")).read()
    for detail in (
        "Environment info",
        "Running with full config",
        "Model:",
        "Starting training",
        "iter: 1",
    ):
        assert detail in log
    assert "\033[" not in log
    assert "Loading from  ..." not in log  # no weights: no load message with an empty path


def test_ctrl_c_says_how_to_resume(synthetic_root, tmp_path):
    out = str(tmp_path / "run")
    proc = subprocess.Popen(
        _command(out, 100000, synthetic_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Ctrl-C reaches a terminal's foreground job with SIGINT at its default; a test run started
        # in the background of a non-interactive shell (`make test &`) ignores SIGINT, and the
        # child would inherit that and train on
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        # faulthandler: a run that outlives the Ctrl-C is aborted below and prints where its
        # threads were, so that such a failure says what ignored the interrupt
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1"),
    )
    try:
        deadline = time.time() + 300
        while not os.path.isfile(os.path.join(out, "last_checkpoint")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(0.5)
        os.killpg(
            proc.pid, signal.SIGINT
        )  # what Ctrl-C in a terminal does: the whole process group
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            stdout, stderr = proc.communicate(timeout=60)
            pytest.fail(
                "training still ran 120 s after Ctrl-C; where its threads were:\n"
                + stderr[-6000:]
                + "\n"
                + stdout[-2000:]
            )
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert re.match(
        rf"Interrupted; continue from {re.escape(out)}/model_\d+\.pth with: ", lines[-1]
    )
    assert " --resume " in lines[-1] and "--config-file" in lines[-1]
