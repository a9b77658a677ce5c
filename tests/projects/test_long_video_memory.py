"""Every method's long-video path in bounded memory: the peak resident memory of a 500-frame video
stays within a small margin of a 50-frame one.

Small models and frames keep the test fast, with the same code paths as a real long video: RLE
output masks on disk, windows and association (VisTR, IFC, SeqFormer, Mask2Former-VIS), MinVIS's
online masks, VITA's feature stores past its memory budget (file and recomputation) and its
streamed VITA module. Frames are made when the model reads them, as the test mapper reads them
from disk. The peak is the kernel's high-water mark of this process, reset before each video
(/proc/self/clear_refs), so both videos are measured in the same process after the same warm-up.
"""

import os

import pytest
import torch
from detectron2.modeling import build_model
from tests.projects.mask2former_clips import (
    CPU_WITHOUT_DATASETS,
    TINY_DETECTOR_WIDTHS,
    TINY_VITA_MODULE,
)

from vis_zoo.engine.setup import build_config
from vis_zoo.zoo.speed import random_video

HEIGHT, WIDTH = 80, 128
SHORT, LONG = 50, 500
# The allocator keeps freed memory at its own pace (IFC's peak moves by up to ~12 MB between calls
# of any length); what this test is for grows by more: VITA's or MinVIS's mask features kept for
# the 450 extra frames would add 450 x 32 x 20 x 32 x 4 bytes = 37 MB, bool output masks 4.6 MB
# per track (10 tracks and more).
MARGIN_MB, MARGIN_FRACTION = 8, 0.02

TINY = {
    "minvis": [*TINY_DETECTOR_WIDTHS, "MODEL.MASK_FORMER.DEC_LAYERS", "2"],
    "ifc": [],
    "seqformer": [],
    "vistr": [],
}
TINY["mask2former_vis"] = TINY["minvis"]
TINY["vita"] = TINY["minvis"] + [
    *TINY_VITA_MODULE,
    "MODEL.VITA.LAST_LAYER_NUM",
    "1",
    # features past 8 MB go to a temporary file ("auto" on CPU), tokens of videos past 120 frames
    # too
    "MODEL.VIS.TEST_FEATURE_MEMORY_MB",
    "8",
]
# the other bounded store of VITA's features: a second detector pass instead of the file
TINY["vita-recompute"] = TINY["vita"] + ["MODEL.VIS.TEST_FEATURE_STORE", "recompute"]


def _high_water_mark_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_high_water_mark() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb(model, num_frames: int) -> float:
    video = random_video(num_frames, HEIGHT, WIDTH, seed=num_frames, lazy=True)
    _reset_high_water_mark()
    with torch.no_grad():
        output = model([video])[0]
    peak = _high_water_mark_mb()
    assert all(len(track) == num_frames for track in output["pred_masks"])
    return peak


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "variant",
    [
        "minvis",
        "vita",
        "vita-recompute",
        "ifc",
        "seqformer",
        "vistr",
        "mask2former_vis",
    ],
)
def test_peak_memory_does_not_grow_with_the_video(variant):
    method = variant.split("-")[0]
    opts = [*CPU_WITHOUT_DATASETS, "MODEL.VIS.OUTPUT_RLE", "True", *TINY[variant]]
    if method in ("minvis", "vita", "mask2former_vis"):
        opts += ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5"]
    cfg = build_config(f"configs/{method}/synthetic_R18.yaml", opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    _peak_mb(model, SHORT)  # warm-up: allocator pools, oneDNN caches
    short = _peak_mb(model, SHORT)
    long = _peak_mb(model, LONG)
    print(f"{variant}: peak {short:.0f} MB at {SHORT} frames, {long:.0f} MB at {LONG}")
    assert long <= short * (1 + MARGIN_FRACTION) + MARGIN_MB, (
        f"{variant}: peak memory grows with the video: {short:.0f} MB at {SHORT} frames, "
        f"{long:.0f} MB at {LONG}"
    )
