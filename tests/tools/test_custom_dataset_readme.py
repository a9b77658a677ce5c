"""The README's "own data" example, run as written: register a YouTube-VIS-format dataset from the
command line, train, evaluate with --eval-only, run the demo; the demo labels carry the dataset's
class names. Only paths are substituted and a few size/length overrides appended (tiny frames,
2 iterations) so that it takes seconds."""

import json
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np

from tests.tools.custom_ytvis import CUSTOM_CATEGORIES, write_custom_ytvis

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Appended to the training command only: the example's config at 48x64 frames for 2 iterations.
FAST_TRAINING = [
    "MODEL.DEVICE",
    "cpu",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
    "INPUT.MIN_SIZE_TRAIN",
    "(48,)",
    "INPUT.MAX_SIZE_TRAIN",
    "64",
    "INPUT.MIN_SIZE_TEST",
    "48",
    "INPUT.MAX_SIZE_TEST",
    "64",
    "DATALOADER.NUM_WORKERS",
    "0",
]


def readme_example_commands():
    """The commands of the README code block that uses --train-data (continuation lines joined)."""
    readme = open(os.path.join(REPO, "README.md")).read()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    block = next(b for b in blocks if "--train-data" in b)
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _write_video(path, frames=4, height=48, width=64):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height))
    for t in range(frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[10:24, 5 + 3 * t : 21 + 3 * t] = (60, 200, 40)
        writer.write(image)
    writer.release()


def _run(argv, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, " ".join(argv) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_readme_own_data_example(tmp_path):
    write_custom_ytvis(str(tmp_path / "my_data"), json_name="train.json")
    write_custom_ytvis(str(tmp_path / "my_data"), json_name="valid.json", num_videos=1)
    _write_video(str(tmp_path / "my_video.mp4"))
    commands = readme_example_commands()
    assert [c[1] for c in commands] == ["tools/train_net.py", "tools/train_net.py", "tools/demo.py"]

    outputs = []
    for command in commands:
        # the interpreter of this test, the repository's tools and configs; data stays relative
        argv = [sys.executable] + [
            os.path.join(REPO, a) if a.startswith(("tools/", "configs/")) else a
            for a in command[1:]
        ]
        if "--eval-only" not in argv and argv[1].endswith("train_net.py"):
            argv += FAST_TRAINING
        outputs.append(_run(argv, cwd=str(tmp_path)))

    run_dir = tmp_path / "output" / "my_vita"
    assert (run_dir / "model_final.pth").is_file()
    # evaluated at the end of training and again with --eval-only, on the dataset from --test-data
    assert (run_dir / "inference" / "my_data_valid" / "results.json").is_file()
    assert "my_data_valid" in outputs[1] and "AP" in outputs[1]
    config = open(run_dir / "config.yaml").read()
    assert "NUM_CLASSES: 6" in config  # taken from the JSON's six categories

    summary = json.load(open(tmp_path / "demo_my" / "demo_summary.json"))
    names = {c["name"] for c in CUSTOM_CATEGORIES}
    assert summary["class_names"] == [c["name"] for c in CUSTOM_CATEGORIES]
    assert summary["tracks"] and {t["class"] for t in summary["tracks"]} <= names
    assert {t["category_id"] for t in summary["tracks"]} <= {c["id"] for c in CUSTOM_CATEGORIES}
    assert (tmp_path / "demo_my" / "my_video.mp4").is_file()
