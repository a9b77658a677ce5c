"""Tiny SeqFormer configs and synthetic clips for the tests."""

import torch
from detectron2.structures import BitMasks, Boxes, Instances

from vis_zoo.config import get_vis_cfg
from vis_zoo.zoo.speed import video_input


def tiny_cfg(**overrides):
    cfg = get_vis_cfg("SeqFormer")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    c = cfg.MODEL.SEQFORMER
    c.NUM_CLASSES = 3
    c.HIDDEN_DIM = 64
    c.NHEADS = 4
    c.ENC_LAYERS = 1
    c.DEC_LAYERS = 2
    c.DIM_FEEDFORWARD = 64
    c.NUM_QUERIES = 8
    c.DROPOUT = 0.0
    c.TEST_TOPK = 5
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, last, value)
    return cfg


def make_clip(
    num_frames=3, height=64, width=96, tracks=((0, 1), (2, 0)), absent=(), seed=0, video_id=1
):
    """One training clip: `tracks` = (class, start_x) per track; `absent` = (track, frame) pairs."""
    g = torch.Generator().manual_seed(seed)
    images, instances = [], []
    for t in range(num_frames):
        img = (torch.rand(3, height, width, generator=g) * 60).to(torch.uint8)
        inst = Instances((height, width))
        masks = torch.zeros(len(tracks), height, width, dtype=torch.bool)
        boxes = torch.zeros(len(tracks), 4)
        ids = torch.arange(len(tracks))
        for i, (cls, x0) in enumerate(tracks):
            if (i, t) in absent:
                ids[i] = -1
                continue
            x = 8 + 20 * x0 + 3 * t
            y = 10 + 8 * i
            masks[i, y : y + 20, x : x + 24] = True
            boxes[i] = torch.tensor([x, y, x + 24, y + 20], dtype=torch.float32)
            img[:, y : y + 20, x : x + 24] = 200 - 60 * cls
        inst.gt_ids = ids
        inst.gt_classes = torch.tensor([c for c, _ in tracks], dtype=torch.long)
        inst.gt_boxes = Boxes(boxes)
        inst.gt_masks = BitMasks(masks)
        images.append(img)
        instances.append(inst)
    return video_input(video_id, images, height, width, instances)
