"""Clip augmentations: one sampled transform applied identically to every frame of a clip.

Video instance segmentation needs the same geometry in every frame of a clip (a track's mask must
move with the object, not with a per-frame random flip), so an augmentation is *sampled once* on the
first frame and the resulting `TransformList` is then applied to every frame and its annotations.
"""

import copy
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from PIL import Image

__all__ = [
    "TEST_RESIZE_ROUNDINGS",
    "shortest_edge_output_shape",
    "ShortestEdgeResize",
    "build_clip_augmentation",
    "apply_clip_augmentations",
    "transform_clip_annotations",
]

# detectron2 names plus the Mask2Former-style "*_by_clip" aliases (sampling is always per clip
# here).
_SAMPLE_STYLES = {
    "choice": "choice",
    "range": "range",
    "choice_by_clip": "choice",
    "range_by_clip": "range",
}


# How the long side of a shortest-edge resize is turned into pixels (INPUT.TEST_RESIZE_ROUNDING):
#   "round": detectron2's ResizeShortestEdge (IFC, VITA, MinVIS): scale both sides as floats, shrink
#            to max_size if the long side exceeds it, then int(x + 0.5) on each side.
#   "floor": torchvision's Resize(int) on a PIL image, as the DETR-family inference scripts call it
# (VisTR, SeqFormer): the short side is exactly `size`, the long side int(size * long / short);
# a max_size first lowers `size` to int(round(max_size * short / long)) (DETR's transforms).
TEST_RESIZE_ROUNDINGS = ("round", "floor")


def shortest_edge_output_shape(
    height: int, width: int, short_edge: int, max_size: int = sys.maxsize, rounding: str = "round"
) -> Tuple[int, int]:
    """(new_h, new_w) of a shortest-edge resize of a height x width image (rules above)."""
    if rounding == "round":
        return T.ResizeShortestEdge.get_output_shape(height, width, short_edge, max_size)
    if rounding != "floor":
        raise ValueError(f"rounding must be one of {TEST_RESIZE_ROUNDINGS}, got {rounding!r}")
    short, long = min(height, width), max(height, width)
    if long / short * short_edge > max_size:  # the long side would pass max_size (DETR's check)
        short_edge = int(round(max_size * short / long))
    # Integer floor division is int(short_edge * long / short) without a float in between.
    new_short, new_long = short_edge, short_edge * long // short
    return (new_short, new_long) if height <= width else (new_long, new_short)


class ShortestEdgeResize(T.Augmentation):
    """Resize to a fixed short side with `rounding` ("round" or "floor", see above); a short side of
    0 keeps the frames as they are (detectron2's meaning of INPUT.MIN_SIZE_TEST = 0).

    The pixels are resampled by detectron2's ResizeTransform: PIL bilinear on uint8 frames, the
    same resampling that torchvision's Resize applies to the PIL images of the official VisTR and
    SeqFormer scripts, so only the output size depends on the rule.
    """

    def __init__(
        self,
        short_edge: int,
        max_size: int = sys.maxsize,
        rounding: str = "round",
        interp=Image.BILINEAR,
    ):
        super().__init__()
        if rounding not in TEST_RESIZE_ROUNDINGS:
            raise ValueError(f"rounding must be one of {TEST_RESIZE_ROUNDINGS}, got {rounding!r}")
        if short_edge < 0:
            raise ValueError(f"short_edge must be >= 0, got {short_edge}")
        self._init(locals())

    def get_transform(self, image):
        if self.short_edge == 0:
            return T.NoOpTransform()
        h, w = image.shape[:2]
        new_h, new_w = shortest_edge_output_shape(
            h, w, self.short_edge, self.max_size, self.rounding
        )
        return T.ResizeTransform(h, w, new_h, new_w, self.interp)


def _test_short_edge(cfg) -> int:
    """INPUT.MIN_SIZE_TEST as one int (detectron2 configs may hold a one-element list)."""
    size = cfg.INPUT.MIN_SIZE_TEST
    if isinstance(size, (list, tuple)):
        if len(size) != 1:
            raise ValueError(f"INPUT.MIN_SIZE_TEST must be one size, got {size}")
        size = size[0]
    return int(size)


def build_clip_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """The clip augmentations described by cfg.

    Training: optional crop (INPUT.CROP.*), ResizeShortestEdge (INPUT.MIN_SIZE_TRAIN with
    INPUT.MIN_SIZE_TRAIN_SAMPLING "choice"/"range", INPUT.MAX_SIZE_TRAIN), horizontal flip when
    INPUT.RANDOM_FLIP == "flip_by_clip" ("none" disables it).
    Test: ShortestEdgeResize(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST, INPUT.TEST_RESIZE_ROUNDING),
    with the rounding of the method's official inference ("round" = detectron2's
    ResizeShortestEdge).

    Every augmentation is sampled once per clip by `apply_clip_augmentations`.
    """
    if not is_train:
        return [
            ShortestEdgeResize(
                _test_short_edge(cfg), cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.TEST_RESIZE_ROUNDING
            )
        ]

    sampling = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    if sampling not in _SAMPLE_STYLES:
        raise ValueError(
            f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be one of {sorted(_SAMPLE_STYLES)}, got "
            f"{sampling!r}"
        )
    min_sizes = cfg.INPUT.MIN_SIZE_TRAIN
    if _SAMPLE_STYLES[sampling] == "range" and len(min_sizes) != 2:
        raise ValueError(
            f"INPUT.MIN_SIZE_TRAIN_SAMPLING 'range' needs two values (low, high), got {min_sizes}"
        )
    augs: List[T.Augmentation] = []
    if cfg.INPUT.CROP.ENABLED:
        # As in detectron2's build_augmentation: crop first, then resize to the training scale.
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    augs.append(T.ResizeShortestEdge(min_sizes, cfg.INPUT.MAX_SIZE_TRAIN, _SAMPLE_STYLES[sampling]))
    flip = cfg.INPUT.RANDOM_FLIP
    if flip == "flip_by_clip":
        augs.append(T.RandomFlip(prob=0.5, horizontal=True, vertical=False))
    elif flip != "none":
        raise ValueError(f"INPUT.RANDOM_FLIP must be 'flip_by_clip' or 'none', got {flip!r}")
    return augs


def apply_clip_augmentations(
    augmentations: Sequence[T.Augmentation], images: Sequence[np.ndarray]
) -> Tuple[List[np.ndarray], T.TransformList]:
    """Sample the augmentations once (on the first frame) and apply them to every frame.

    Args:
        augmentations: detectron2 Augmentations (or Transforms).
        images: T frames, each an HxWxC uint8 array; all frames must have the same H, W.

    Returns:
        (augmented frames, each H'xW'xC; the TransformList that was applied to every frame)
    """
    if len(images) == 0:
        raise ValueError("apply_clip_augmentations: a clip needs at least one frame")
    first_hw = images[0].shape[:2]
    for i, image in enumerate(images):
        if image.shape[:2] != first_hw:
            raise ValueError(
                f"apply_clip_augmentations: frame {i} has size {image.shape[:2]}, frame 0 has "
                f"{first_hw}; all frames of a clip must have the same size"
            )
    aug_input = T.AugInput(images[0])
    transforms = T.AugmentationList(list(augmentations))(aug_input)
    out = [aug_input.image] + [transforms.apply_image(image) for image in images[1:]]
    return out, transforms


def _normalize_segmentation(segm, height: int, width: int, rasterize_polygons: bool):
    """Uncompressed RLE (counts as a list) -> compressed RLE, which detectron2 can decode.

    With `rasterize_polygons`, polygons also become a compressed RLE: cropping polygons needs
    shapely (not a dependency), while cropping a mask does not.
    """
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_util.frPyObjects(segm, height, width)
    if rasterize_polygons and isinstance(segm, list):
        polygons = [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in segm]
        polygons = [p for p in polygons if len(p) >= 6]  # pycocotools needs >= 3 points
        if not polygons:
            return mask_util.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    return segm


def transform_clip_annotations(
    annotations_per_frame: Sequence[Sequence[Dict]],
    transforms: T.TransformList,
    image_size: Tuple[int, int],
    original_size: Tuple[int, int],
) -> List[List[Dict]]:
    """Apply one TransformList to the annotations of every frame.

    Args:
        annotations_per_frame: per frame, a list of annotation dicts (bbox, bbox_mode,
            segmentation as polygons or RLE, ...). Not modified.
        transforms: the clip's transforms (from `apply_clip_augmentations`).
        image_size: (H', W') of the augmented frames.
        original_size: (H, W) of the frames before augmentation (needed for uncompressed RLE).

    Returns:
        per frame, copies of the annotations with `bbox` in XYXY_ABS and `segmentation` as
        transformed polygons (list of flat arrays) or an H'xW' uint8 mask (from RLE).
    """
    rasterize = any(isinstance(t, T.CropTransform) for t in transforms.transforms)
    out = []
    for frame_annos in annotations_per_frame:
        frame_out = []
        for anno in frame_annos:
            anno = copy.copy(anno)  # shallow: transform_instance_annotations replaces fields
            if "segmentation" in anno:
                anno["segmentation"] = _normalize_segmentation(
                    anno["segmentation"], *original_size, rasterize_polygons=rasterize
                )
            frame_out.append(utils.transform_instance_annotations(anno, transforms, image_size))
        out.append(frame_out)
    return out
