"""Dataset mappers: a video dataset dict (or a COCO-style image dict) -> a model-ready clip.

Output contract (docs/architecture.md, one dict per clip):
    video_id, height, width (original frame size), length (frames in the source video),
    frame_idx (sampled frame indices), file_names (of the sampled frames),
    image: T uint8 tensors [C, H', W'] in INPUT.FORMAT: a list in training; at test time a lazy
        sequence (`vis_zoo.utils.video_io.MappedFrames`) that reads a frame when it is indexed,
    instances (training only): list of T `Instances` of image size (H', W') with
        gt_ids [N] long, gt_classes [N] long, gt_boxes Boxes [N, 4] XYXY, gt_masks BitMasks [N, H',
        W'].
    Row i is the same track in every frame; gt_ids[i] = -1 (and an empty box and mask) in a frame
    where the track is absent or cropped away. gt_classes[i] is the track's class in every frame.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances, polygons_to_bitmask

from vis_zoo.utils.video_io import MappedFrames

from .augmentation import (
    apply_clip_augmentations,
    build_clip_augmentation,
    transform_clip_annotations,
)
from .lazy_frames import (
    FrameReadError,
    ImageFileFrames,
    ModelInput,
    read_frame,
    video_test_transform,
    to_chw_tensor,
)

__all__ = [
    "YTVISDatasetMapper",
    "CocoClipDatasetMapper",
    "FrameReadError",
    "sample_frame_indices",
    "build_clip_instances",
]

logger = logging.getLogger(__name__)


def sample_frame_indices(
    video_length: int,
    num_frames: int,
    frame_range: int,
    *,
    replace: bool = True,
    shuffle: bool = False,
    rng=np.random,
) -> List[int]:
    """Sample the frames of one training clip.

    A reference frame r is drawn uniformly from [0, video_length); the other num_frames - 1 frames
    come from the window [r - frame_range, r + frame_range] without r, with replacement if `replace`
    (the IFC/VITA recipe), else without. If the window holds fewer than num_frames - 1 frames, every
    window frame is taken and the rest is drawn with replacement (so short videos repeat frames; a
    1-frame video repeats r). The result is sorted unless `shuffle`.

    Args:
        rng: numpy RandomState / the `np.random` module (default: the global state, which detectron2
            reseeds per DataLoader worker).

    Returns:
        num_frames frame indices.
    """
    if video_length < 1:
        raise ValueError(f"sample_frame_indices: video_length must be >= 1, got {video_length}")
    if num_frames < 1:
        raise ValueError(f"sample_frame_indices: num_frames must be >= 1, got {num_frames}")
    ref = int(rng.randint(video_length))
    start, end = max(0, ref - frame_range), min(video_length, ref + frame_range + 1)
    window = np.array([i for i in range(start, end) if i != ref], dtype=np.int64)
    num_other = num_frames - 1
    if num_other == 0:
        others = np.zeros((0,), dtype=np.int64)
    elif len(window) == 0:
        others = np.full((num_other,), ref, dtype=np.int64)
    elif replace:
        others = rng.choice(window, num_other, replace=True)
    elif len(window) >= num_other:
        others = rng.choice(window, num_other, replace=False)
    else:
        extra = rng.choice(window, num_other - len(window), replace=True)
        others = np.concatenate([window, extra])
    indices = np.concatenate([[ref], others]).astype(np.int64)
    if shuffle:
        indices = rng.permutation(indices)
    else:
        indices = np.sort(indices)
    return indices.tolist()


def _annotation_to_mask(anno: Dict, image_size: Tuple[int, int]) -> np.ndarray:
    """A transformed annotation's segmentation -> bool mask [H, W]."""
    segm = anno["segmentation"]
    height, width = image_size
    if isinstance(segm, np.ndarray):  # RLE, decoded by transform_instance_annotations
        return segm.astype(bool)
    # Polygons: drop degenerate ones (< 3 points) that a crop can produce.
    polygons = [np.asarray(p, dtype=np.float64).reshape(-1) for p in segm]
    polygons = [p for p in polygons if len(p) >= 6]
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    return polygons_to_bitmask(polygons, height, width)


def build_clip_instances(
    frame_annotations: Sequence[Sequence[Dict]],
    track_ids: Sequence[int],
    image_size: Tuple[int, int],
) -> List[Instances]:
    """Per-frame `Instances` with rows aligned by track.

    Args:
        frame_annotations: per frame, transformed annotation dicts (from
            `transform_clip_annotations`), each with `id` (track id), `category_id` and
            `segmentation`.
        track_ids: the tracks of the clip, in row order (N of them). Annotations whose id is not
            listed are ignored.
        image_size: (H, W) of the augmented frames.

    Returns:
        T `Instances`: gt_ids [N] (track id, or -1 where the track is absent or its mask empty),
        gt_classes [N] (the track's class in every frame; -1 only if never seen), gt_boxes [N, 4]
        (XYXY from the mask; zeros where absent), gt_masks BitMasks [N, H, W].
    """
    height, width = image_size
    row_of = {int(tid): row for row, tid in enumerate(track_ids)}
    num_tracks = len(track_ids)
    classes = torch.full((num_tracks,), -1, dtype=torch.int64)
    for frame_annos in frame_annotations:
        for anno in frame_annos:
            row = row_of.get(int(anno["id"]))
            if row is not None and classes[row] < 0:
                classes[row] = int(anno["category_id"])

    out = []
    for frame_annos in frame_annotations:
        ids = torch.full((num_tracks,), -1, dtype=torch.int64)
        masks = torch.zeros((num_tracks, height, width), dtype=torch.bool)
        for anno in frame_annos:
            row = row_of.get(int(anno["id"]))
            if row is None:
                continue
            mask = torch.from_numpy(np.ascontiguousarray(_annotation_to_mask(anno, image_size)))
            if mask.any():
                masks[row] = mask
                ids[row] = int(anno["id"])
        bitmasks = BitMasks(masks)
        # Boxes from the masks, so a box is empty exactly where the mask is (BitMasks gives zeros).
        boxes = bitmasks.get_bounding_boxes()
        instances = Instances(image_size)
        instances.gt_ids = ids
        instances.gt_classes = classes.clone()
        instances.gt_boxes = boxes
        instances.gt_masks = bitmasks
        out.append(instances)
    return out


def _is_valid_annotation(anno: Dict) -> bool:
    """Crowd regions and missing segmentations (YTVIS writes None for absent frames) are no
    track."""
    return anno.get("iscrowd", 0) == 0 and anno.get("segmentation", None) is not None


class YTVISDatasetMapper:
    """Map a video dataset dict (docs/architecture.md contract) to a training clip or a full test
    video.

    Training: T = `sampling_frame_num` frames sampled by `sample_frame_indices`, one augmentation
    sampled for the whole clip, per-frame `instances` aligned by track (see module docstring).
    Test: every frame, test augmentations, no `instances`; the frames are read lazily, when the
    model indexes them (a FrameReadError or a size mismatch surfaces then, naming the frame).
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str = "BGR",
        sampling_frame_num: int = 5,
        sampling_frame_range: int = 20,
        sampling_frame_shuffle: bool = False,
        sampling_frame_replace: bool = True,
    ):
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_frame_shuffle = sampling_frame_shuffle
        self.sampling_frame_replace = sampling_frame_replace
        mode = "training" if is_train else "inference"
        logger.info(f"[YTVISDatasetMapper] augmentations used in {mode}: {self.augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": build_clip_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
            "sampling_frame_replace": cfg.INPUT.SAMPLING_FRAME_REPLACE,
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        video_id = dataset_dict.get("video_id", "?")
        what = f"video {video_id}"
        for key in ("file_names", "height", "width"):
            if key not in dataset_dict:
                raise KeyError(f"{what}: dataset dict has no '{key}'")
        file_names = list(dataset_dict["file_names"])
        length = int(dataset_dict.get("length", len(file_names)))
        if length != len(file_names) or length == 0:
            raise ValueError(
                f"{what}: 'length' is {length} but there are {len(file_names)} file_names"
            )
        annotations = dataset_dict.get("annotations") if self.is_train else None
        if annotations is not None and len(annotations) != length:
            raise ValueError(
                f"{what}: 'annotations' has {len(annotations)} frames but the video has {length}"
            )

        if self.is_train:
            frame_idx = sample_frame_indices(
                length,
                self.sampling_frame_num,
                self.sampling_frame_range,
                replace=self.sampling_frame_replace,
                shuffle=self.sampling_frame_shuffle,
            )
        else:
            frame_idx = list(range(length))

        height, width = int(dataset_dict["height"]), int(dataset_dict["width"])
        if not self.is_train:
            # Every frame of the video, read and resized only when the model indexes it (a chunk
            # or window at a time): memory does not grow with the video's length.
            source = ImageFileFrames(file_names, self.image_format, height, width, what, frame_idx)
            transform = video_test_transform(self.augmentations, height, width)
            return {
                "video_id": video_id,
                "height": height,
                "width": width,
                "length": length,
                "frame_idx": frame_idx,
                "file_names": file_names,
                "image": MappedFrames(source, ModelInput(transform)),
            }
        frames = []
        for i in frame_idx:
            frame = read_frame(file_names[i], self.image_format, f"{what} frame {i}")
            if frame.shape[:2] != (height, width):
                raise ValueError(
                    f"{what} frame {i} ('{file_names[i]}'): image is {frame.shape[1]}x"
                    f"{frame.shape[0]} (WxH) but the dataset dict says {width}x{height}"
                )
            frames.append(frame)
        frames, transforms = apply_clip_augmentations(self.augmentations, frames)
        image_size = tuple(frames[0].shape[:2])

        out = {
            "video_id": video_id,
            "height": height,
            "width": width,
            "length": length,
            "frame_idx": frame_idx,
            "file_names": [file_names[i] for i in frame_idx],
            "image": [to_chw_tensor(f) for f in frames],
        }
        if annotations is None:
            raise KeyError(f"{what}: training needs 'annotations' in the dataset dict")

        sampled_annos = [[a for a in annotations[i] if _is_valid_annotation(a)] for i in frame_idx]
        for t, frame_annos in enumerate(sampled_annos):
            for anno in frame_annos:
                for key in ("id", "category_id", "bbox", "bbox_mode"):
                    if key not in anno:
                        raise KeyError(f"{what} frame {frame_idx[t]}: an annotation has no '{key}'")
        track_ids = sorted({int(a["id"]) for frame_annos in sampled_annos for a in frame_annos})
        transformed = transform_clip_annotations(
            sampled_annos, transforms, image_size, (height, width)
        )
        out["instances"] = build_clip_instances(transformed, track_ids, image_size)
        return out


def _sample_relative_crop(
    height: int, width: int, crop_range: Tuple[float, float], rng
) -> T.CropTransform:
    """A crop whose sides are independent uniform fractions in `crop_range` of the image sides."""
    low, high = crop_range
    crop_h = max(1, int(round(height * rng.uniform(low, high))))
    crop_w = max(1, int(round(width * rng.uniform(low, high))))
    y0 = int(rng.randint(height - crop_h + 1))
    x0 = int(rng.randint(width - crop_w + 1))
    return T.CropTransform(x0, y0, crop_w, crop_h)


class CocoClipDatasetMapper:
    """Map an image dataset dict (detectron2 format) to a pseudo-video of T frames.

    Training: frame t is an independent random crop of the image (each side a fraction in
    `crop_size_range`); frame 0's crop is resized so its short side is a random choice of
    `min_sizes` (long side <= `max_size`), and every other frame's crop is resized to that same
    size (one interpolation; the same geometry as resizing each crop to its own scale and then to
    the common size). One horizontal flip decision for the whole clip. Instance i of the image is
    track i in every frame; gt_id is -1 where the crop removes it.
    Test: a one-frame clip with the test augmentations, no `instances`.
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        image_format: str = "BGR",
        sampling_frame_num: int = 5,
        crop_size_range: Tuple[float, float] = (0.6, 1.0),
        min_sizes: Sequence[int] = (288, 320, 352, 392, 416, 448, 480, 512),
        max_size: int = 768,
        random_flip: bool = True,
        test_augmentations: Optional[List[T.Augmentation]] = None,
    ):
        low, high = crop_size_range
        if not (0 < low <= high <= 1):
            raise ValueError(
                f"crop_size_range must satisfy 0 < low <= high <= 1, got {crop_size_range}"
            )
        self.is_train = is_train
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.crop_size_range = (float(low), float(high))
        self.min_sizes = list(min_sizes)
        self.max_size = max_size
        self.random_flip = random_flip
        self.test_augmentations = list(test_augmentations or [])

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        flip = cfg.INPUT.RANDOM_FLIP
        if flip not in ("flip_by_clip", "none"):
            raise ValueError(f"INPUT.RANDOM_FLIP must be 'flip_by_clip' or 'none', got {flip!r}")
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "crop_size_range": tuple(cfg.INPUT.PSEUDO.CROP_SIZE),
            "min_sizes": list(cfg.INPUT.PSEUDO.MIN_SIZE_TRAIN),
            "max_size": cfg.INPUT.PSEUDO.MAX_SIZE_TRAIN,
            "random_flip": flip == "flip_by_clip",
            "test_augmentations": build_clip_augmentation(cfg, is_train=False),
        }

    def _frame_transforms(self, height: int, width: int, rng=np.random) -> List[T.TransformList]:
        """One TransformList per frame; all map (height, width) to one common output size."""
        short = int(rng.choice(self.min_sizes))
        per_frame = []
        out_hw = None
        for _ in range(self.sampling_frame_num):
            crop = _sample_relative_crop(height, width, self.crop_size_range, rng)
            if out_hw is None:
                out_hw = T.ResizeShortestEdge.get_output_shape(crop.h, crop.w, short, self.max_size)
            resize = T.ResizeTransform(crop.h, crop.w, out_hw[0], out_hw[1])
            per_frame.append([crop, resize])
        flip = self.random_flip and rng.rand() < 0.5
        if flip:
            for tfms in per_frame:
                tfms.append(T.HFlipTransform(out_hw[1]))
        return [T.TransformList(tfms) for tfms in per_frame]

    def __call__(self, dataset_dict: Dict) -> Dict:
        image_id = dataset_dict.get("image_id", dataset_dict.get("file_name", "?"))
        what = f"image {image_id}"
        if "file_name" not in dataset_dict:
            raise KeyError(f"{what}: dataset dict has no 'file_name'")
        file_name = dataset_dict["file_name"]
        image = read_frame(file_name, self.image_format, what)
        height = int(dataset_dict.get("height", image.shape[0]))
        width = int(dataset_dict.get("width", image.shape[1]))
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"{what} ('{file_name}'): image is {image.shape[1]}x{image.shape[0]} (WxH) but "
                f"the dataset dict says {width}x{height}"
            )

        if not self.is_train:
            frames, _ = apply_clip_augmentations(self.test_augmentations, [image])
            return {
                "video_id": image_id,
                "height": height,
                "width": width,
                "length": 1,
                "frame_idx": [0],
                "file_names": [file_name],
                "image": [to_chw_tensor(frames[0])],
            }

        annos = [
            dict(a, id=i)
            for i, a in enumerate(
                a for a in dataset_dict.get("annotations", []) if _is_valid_annotation(a)
            )
        ]
        frames, frame_annos = [], []
        for transforms in self._frame_transforms(height, width):
            frames.append(transforms.apply_image(image))
            frame_size = tuple(frames[-1].shape[:2])
            frame_annos.append(
                transform_clip_annotations([annos], transforms, frame_size, (height, width))[0]
            )
        image_size = tuple(frames[0].shape[:2])
        num_frames = self.sampling_frame_num
        return {
            "video_id": image_id,
            "height": height,
            "width": width,
            "length": num_frames,
            "frame_idx": list(range(num_frames)),
            "file_names": [file_name] * num_frames,
            "image": [to_chw_tensor(f) for f in frames],
            "instances": build_clip_instances(frame_annos, list(range(len(annos))), image_size),
        }
