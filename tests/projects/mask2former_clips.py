"""Test inputs shared by the Mask2Former-based methods (VITA, MinVIS): a tiny detector config,
moving-box
clips with per-frame instances, test videos and the output-contract check
(`vis_zoo.modeling.postprocessing.check_video_output`)."""

import torch
from detectron2.structures import BitMasks, Boxes, Instances

from vis_zoo.modeling.postprocessing import check_video_output

# The widths of a tiny Mask2Former detector: 32 channels, 4 heads, one pixel-decoder layer.
TINY_DETECTOR_WIDTHS = [
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM",
    "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS",
    "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM",
    "32",
    "MODEL.MASK_FORMER.NHEADS",
    "4",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD",
    "64",
]

# CPU and no datasets: a test's class count is its own, not the synthetic data's.
CPU_WITHOUT_DATASETS = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]

# A tiny Mask2Former detector (4 classes, 32 channels, 8 queries); each test adds its DEC_LAYERS.
TINY_DETECTOR = [
    *CPU_WITHOUT_DATASETS,
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "4",
    *TINY_DETECTOR_WIDTHS,
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
    "8",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS",
    "256",
    "TEST.DETECTIONS_PER_IMAGE",
    "5",
]

# A tiny VITA module (32 channels, 4 heads, 2 encoder and 2 decoder layers); each test adds its
# LAST_LAYER_NUM and the rest.
TINY_VITA_MODULE = [
    "MODEL.VITA.HIDDEN_DIM",
    "32",
    "MODEL.VITA.NHEADS",
    "4",
    "MODEL.VITA.DIM_FEEDFORWARD",
    "64",
    "MODEL.VITA.ENC_LAYERS",
    "2",
    "MODEL.VITA.DEC_LAYERS",
    "2",
]

# The tiny detector with 3 decoder layers (Mask2Former-VIS, MinVIS).
TINY_DETECTOR_3_LAYERS = TINY_DETECTOR + ["MODEL.MASK_FORMER.DEC_LAYERS", "3"]


def build_tiny_model(config_file, opts=TINY_DETECTOR_3_LAYERS, extra=()):
    """The model of `config_file` with the tiny detector (`opts`) and more overrides `extra`,
    randomly initialised with torch seed 0."""
    from detectron2.modeling import build_model

    from vis_zoo.engine.setup import build_config

    cfg = build_config(config_file, list(opts) + list(extra))
    torch.manual_seed(0)
    return build_model(cfg)


def make_clip(num_frames=3, h=64, w=96, num_objects=2, seed=0, absent=None):
    """A clip with `num_objects` moving boxes; `absent` = (row, frame) where that track is
    missing."""
    g = torch.Generator().manual_seed(seed)
    images, instances = [], []
    for t in range(num_frames):
        images.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        masks = torch.zeros(num_objects, h, w, dtype=torch.bool)
        ids = torch.arange(num_objects) + 5  # ids need not start at 0
        for i in range(num_objects):
            masks[i, 6 + 14 * i + t : 20 + 14 * i + t, 10 + 20 * i : 30 + 20 * i] = True
        if absent is not None and absent[1] == t:
            masks[absent[0]] = False
            ids[absent[0]] = -1
        inst = Instances((h, w))
        inst.gt_ids = ids
        inst.gt_classes = torch.arange(num_objects) % 4
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = Boxes(torch.zeros(num_objects, 4))
        instances.append(inst)
    return {
        "video_id": seed,
        "height": h,
        "width": w,
        "length": num_frames,
        "frame_idx": list(range(num_frames)),
        "file_names": [f"{t}.jpg" for t in range(num_frames)],
        "image": images,
        "instances": instances,
    }


def make_test_video(num_frames, seed=0, h=64, w=96, out_hw=(80, 120)):
    """A test-mapper-like input (no instances) whose output size differs from the frame size."""
    clip = make_clip(num_frames=num_frames, h=h, w=w, seed=seed)
    clip.pop("instances")
    clip["height"], clip["width"] = out_hw
    return clip


def check_output(out, num_frames, h, w, k):
    """The model-output contract for k predictions (bool masks) over num_frames frames at (h, w)."""
    check_video_output(
        out, num_frames=num_frames, image_size=(h, w), num_classes=4, num_predictions=k, rle=False
    )


def check_chunked_inference_matches_one_pass(model, video, cpu_pixels_per_pass):
    """Detector passes of `cpu_pixels_per_pass` pixels and 3-frame mask upsampling give the output
    of
    one pass over the whole video (7 frames of 64x96 shown at 80x120, top 5)."""
    with torch.no_grad():
        model.test_chunk_pixels_cpu = 10**9  # the whole video in one detector pass
        ref = model([video])[0]
        # on CPU a detector pass takes MODEL.VIS.TEST_CHUNK_PIXELS_CPU pixels
        model.test_chunk_pixels_cpu, model.test_interpolate_chunk_size = cpu_pixels_per_pass, 3
        chunked = model([video])[0]
    check_output(ref, 7, 80, 120, 5)
    torch.testing.assert_close(chunked["pred_scores"], ref["pred_scores"], atol=1e-5, rtol=1e-4)
    assert torch.equal(chunked["pred_labels"], ref["pred_labels"])
    for a, b in zip(chunked["pred_masks"], ref["pred_masks"]):
        assert (a != b).float().mean() < 1e-3
