"""The model's test-time frames, read lazily: the test mapper and the demo hand the model a
sequence that decodes and resizes a frame only when the model indexes it (one chunk or window at
a time), so a video of any length never sits in memory as tensors.

    transform = video_test_transform(augmentations, height, width)   # one geometry per video
    frames = MappedFrames(ImageFileFrames(file_names, "BGR"), ModelInput(transform))
    frames[10]   # uint8 tensor [C, H', W'] in the model's INPUT.FORMAT at the test size

`ModelInput` and `ImageFileFrames` are plain picklable objects, so a data-loader worker can hand
the lazy sequence to the main process (a few hundred bytes instead of the frames).
"""

from typing import List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from vis_zoo.utils.video_io import FrameSource

__all__ = [
    "FrameReadError",
    "ImageFileFrames",
    "ModelInput",
    "read_frame",
    "video_test_transform",
    "to_chw_tensor",
]


class FrameReadError(RuntimeError):
    """A frame (or image) of a dataset dict could not be read."""


def read_frame(path: str, image_format: str, what: str) -> np.ndarray:
    """detectron2's `read_image` of one frame; a FrameReadError naming `what` and the file when
    it cannot be read."""
    try:
        return utils.read_image(path, format=image_format)
    except Exception as e:  # missing file, truncated/corrupt JPEG, permission, ...
        raise FrameReadError(
            f"{what}: cannot read frame file '{path}': {type(e).__name__}: {e}"
        ) from e


def video_test_transform(
    augmentations: Sequence[T.Augmentation], height: int, width: int
) -> T.TransformList:
    """The test augmentations sampled for a video of frames H x W (the test resize depends on the
    size only, so every frame gets the transform of the first)."""
    aug_input = T.AugInput(np.zeros((height, width, 3), dtype=np.uint8))
    return T.AugmentationList(list(augmentations))(aug_input)


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWxC uint8 array -> uint8 tensor [C, H, W]."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class ModelInput:
    """HxWxC uint8 frame (already in INPUT.FORMAT) -> the transformed uint8 tensor [C, H', W']."""

    def __init__(self, transform: T.TransformList):
        self.transform = transform

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        image = self.transform.apply_image(np.ascontiguousarray(image))
        return to_chw_tensor(image[:, :, None] if image.ndim == 2 else image)


class ImageFileFrames(FrameSource):
    """The frames of a dataset dict: image files read with detectron2's `read_image` in
    `image_format` when indexed, each checked against the video's size.

    Args:
        file_names: one path per frame.
        image_format: detectron2 format ("BGR", "RGB", ...).
        height, width: the size every frame must have (the dataset dict's).
        what: names the video in errors ("video 7").
    """

    def __init__(
        self,
        file_names: Sequence[str],
        image_format: str,
        height: int,
        width: int,
        what: str = "video",
        frame_idx: Optional[Sequence[int]] = None,
    ):
        self.files: List[str] = list(file_names)
        self.image_format = image_format
        self.height, self.width = int(height), int(width)
        self.what = what
        self.frame_idx = list(frame_idx) if frame_idx is not None else list(range(len(self.files)))
        self.path = what
        self.fps = 0.0

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> np.ndarray:
        path, frame = self.files[index], self.frame_idx[index]
        image = read_frame(path, self.image_format, f"{self.what} frame {frame}")
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"{self.what} frame {frame} ('{path}'): image is {image.shape[1]}x"
                f"{image.shape[0]} (WxH) but the dataset dict says "
                f"{self.width}x{self.height}"
            )
        return image
