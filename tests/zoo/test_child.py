"""vis_zoo.zoo.child: a measuring child process and its memory limit."""

from vis_zoo.zoo.child import run_child
from tests.zoo.zoo_helpers import IFC_SYNTHETIC


def test_measuring_child_is_stopped_at_the_memory_limit():
    spec = {
        "config_file": IFC_SYNTHETIC,
        "device": "cpu",
        "threads": 1,
        "opts": [],
        "size": [64, 96],
        "train_iters": 1,
        "train_batch": 1,
        "mem_limit_gb": 0.25,
    }  # importing torch alone passes 0.25 GB
    res = run_child("train", spec, threads=1, timeout_s=300)
    assert "passed the limit of 0.25 GB" in res["error"] and res["over_budget"]
