"""tools/visualize_data.py writes one image per sampled clip, frames side by side, tracks drawn."""

import os

import numpy as np
import torch
from detectron2.structures import BitMasks, Instances
from PIL import Image
from tests.tools.tool_loading import load_tool


def _load_tool():
    return load_tool("visualize_data.py")


def test_draw_clip_colours_tracks_consistently():
    tool = _load_tool()
    masks = torch.zeros(2, 2, 20, 30, dtype=torch.bool)  # [T, N, H, W]
    masks[:, 0, 2:10, 2:10] = True
    masks[0, 1, 12:18, 20:28] = True  # track 9 only in frame 0
    clip = {"image": [torch.zeros(3, 20, 30, dtype=torch.uint8)] * 2, "instances": []}
    for t in range(2):
        inst = Instances((20, 30))
        inst.gt_ids = torch.tensor([4, 9 if t == 0 else -1])
        inst.gt_classes = torch.tensor([0, 1])
        inst.gt_masks = BitMasks(masks[t])
        clip["instances"].append(inst)
    canvas = tool.draw_clip(clip, "RGB", ["cat", "dog"])
    assert canvas.shape == (20, 30 * 2 + 4, 3) and canvas.dtype == np.uint8
    left, right = canvas[:, :30], canvas[:, 34:]
    # Track 4 has the same colour in both frames (centre pixel, away from text and contour).
    np.testing.assert_array_equal(left[6, 6], right[6, 6])
    assert left[6, 6].any()
    # Track 9 is drawn only where present.
    assert left[15, 24].any() and not right[15, 24].any()


def test_main_writes_one_image_per_clip(tmp_path, synthetic_root):
    config = tmp_path / "vis.yaml"
    config.write_text(
        "INPUT:\n  FORMAT: RGB\n  MIN_SIZE_TRAIN: (64,)\n  MAX_SIZE_TRAIN: 128\n"
        "  SAMPLING_FRAME_NUM: 3\n  PSEUDO:\n    MIN_SIZE_TRAIN: (64,)\n    MAX_SIZE_TRAIN: 128\n"
        "DATASETS:\n  TRAIN: ('synthetic_vis_train', 'synthetic_img_train')\n"
        "  DATASET_RATIO: [1.0, 1.0]\n"
        "DATALOADER:\n  NUM_WORKERS: 0\n  ASPECT_RATIO_GROUPING: False\n"
        "SOLVER:\n  IMS_PER_BATCH: 2\n"
    )
    out_dir = tmp_path / "out"
    written = _load_tool().main(
        ["--config-file", str(config), "--output", str(out_dir), "--num-clips", "3", "SEED", "1"]
    )
    assert len(written) == 3 and sorted(os.listdir(out_dir)) == sorted(
        map(os.path.basename, written)
    )
    for path in written:
        image = np.asarray(Image.open(path))
        # 3 frames side by side (two 4-px gaps), short side 64.
        assert image.shape[0] == 64 and image.shape[1] > 3 * 64
