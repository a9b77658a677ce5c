"""Backbone glue shared by every method: frame normalisation/padding, per-level padding masks, and a
frame-feature cache that runs per-frame work in chunks so that long videos use bounded memory.

The backbone itself is detectron2's (``detectron2.modeling.build_backbone``), so
``MODEL.BACKBONE.*``
and ``MODEL.RESNETS.*`` select it and its parameter names are detectron2's.
"""

import math
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import torch
from detectron2.structures import ImageList
from torch import Tensor


def input_frames(video: dict) -> Sequence[Tensor]:
    """The frames of one mapper dict ("image": T tensors [C, H, W], or a lazy sequence of them).

    Raises a ValueError naming the video when "image" is missing or empty.
    """
    images = video.get("image")
    if images is None or len(images) == 0:
        raise ValueError(f"video {video.get('video_id', '?')}: input has no 'image' frames")
    return images


def video_frames(batched_inputs: Sequence[dict]) -> Tuple[List[Tensor], List[int]]:
    """All frames of a batch of videos, video-major, and the number of frames of each video.

    Raises a ValueError naming the video when "image" is missing or empty.
    """
    frames, lengths = [], []
    for video in batched_inputs:
        images = input_frames(video)
        frames.extend(images)
        lengths.append(len(images))
    return frames, lengths


def normalize_and_pad(
    frames: Sequence[Tensor], pixel_mean: Tensor, pixel_std: Tensor, size_divisibility: int = 0
) -> ImageList:
    """(x - mean) / std on each frame, then pad all to the largest (as detectron2/DETR do: pad value
    0 after normalisation).

    Args:
        frames: N tensors [C, H_i, W_i] (uint8 or float, 0-255 scale).
        pixel_mean, pixel_std: [C, 1, 1] on the target device.
    Returns:
        ImageList with tensor [N, C, H_max, W_max] on pixel_mean's device and the unpadded sizes.
    """
    device = pixel_mean.device
    normed = [(f.to(device=device, dtype=torch.float32) - pixel_mean) / pixel_std for f in frames]
    return ImageList.from_tensors(normed, size_divisibility)


def padding_mask(
    image_sizes: Sequence[Tuple[int, int]],
    feature_hw: Tuple[int, int],
    stride: int,
    device: torch.device,
) -> Tensor:
    """Padding mask of one feature level: True outside ceil(h/stride) x ceil(w/stride) of each
    image.

    Returns:
        bool [N, h, w].
    """
    height, width = feature_hw
    mask = torch.ones((len(image_sizes), height, width), dtype=torch.bool, device=device)
    for i, (h, w) in enumerate(image_sizes):
        mask[i, : int(math.ceil(h / stride)), : int(math.ceil(w / stride))] = False
    return mask


def backbone_with_masks(
    backbone: torch.nn.Module, images: ImageList
) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """Run a detectron2 backbone and build a padding mask for every output level.

    Returns:
        features: name -> [N, C_l, h_l, w_l]; masks: name -> bool [N, h_l, w_l] (True = padding).
    """
    features = backbone(images.tensor)
    shapes = backbone.output_shape()
    masks = {
        name: padding_mask(images.image_sizes, feat.shape[-2:], shapes[name].stride, feat.device)
        for name, feat in features.items()
    }
    return features, masks


class FrameFeatureCache:
    """Per-frame features of one video, computed on demand in chunks and released when no longer
    needed.

    ``compute_fn(frame_ids)`` returns a dict of tensors whose first dim indexes those frames (for
    example backbone levels, projected features, padding masks). ``get(frame_ids)`` computes the
    missing frames ``chunk_size`` at a time (in ascending order, every frame up to the largest id
    asked) and returns the dict for the requested frames; ``release_before(f)`` frees every
    frame < f.

    The frames held are one run [first, end) stored contiguously, one buffer per key
    [capacity, ...]: a window of consecutive frames is handed out as views of those buffers, not as
    a stacked copy, and a later window moves the frames it shares with the earlier one to the front
    of the same buffers. With windows processed left to right the memory is one window of
    features (plus one chunk's output while it is copied in), whatever the video length, and each
    frame is computed once. The views are valid until the next `get`: callers use them within the
    window and do not write to them. Any other set of frames (repeated or out of order) is
    returned as a copy.
    """

    def __init__(self, compute_fn: Callable[[List[int]], Dict[str, Tensor]], chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"FrameFeatureCache: chunk_size must be >= 1, got {chunk_size}")
        self.compute_fn = compute_fn
        self.chunk_size = chunk_size
        self._buffers: Dict[str, Tensor] = {}  # key -> [capacity, ...]; row 0 is frame _first
        self._first = 0  # frame held in row 0
        self._end = 0  # frames [_first, _end) are in rows [0, _end - _first)
        # frames computed so far (each frame once unless released and asked again)
        self.num_computed = 0

    def _capacity(self) -> int:
        return next(iter(self._buffers.values())).shape[0] if self._buffers else 0

    def _make_room(self, rows: int, example: Dict[str, Tensor]) -> None:
        """Ensure `rows` rows from row 0, keeping the held frames in place (buffers grown once, to
        `rows`, by a copy)."""
        if rows <= self._capacity():
            return
        held = self._end - self._first
        grown = {}
        for key, value in example.items():
            buffer = value.new_empty((rows, *value.shape[1:]))
            if held:
                buffer[:held].copy_(self._buffers[key][:held])
            grown[key] = buffer
        self._buffers = grown

    def _compute_up_to(self, last: int) -> None:
        """Compute frames [_end, last] chunk by chunk and append them to the buffers."""
        while self._end <= last:
            chunk = list(range(self._end, min(self._end + self.chunk_size, last + 1)))
            out = self.compute_fn(chunk)
            # room for every frame still to compute, so that the buffers grow at most once per get
            self._make_room(last + 1 - self._first, out)
            rows = slice(chunk[0] - self._first, chunk[-1] + 1 - self._first)
            for key, value in out.items():
                self._buffers[key][rows].copy_(value)
            del out
            self._end = chunk[-1] + 1
            self.num_computed += len(chunk)

    def get(self, frame_ids: Iterable[int]) -> Dict[str, Tensor]:
        frame_ids = list(frame_ids)
        low, high = min(frame_ids), max(frame_ids)
        if low < self._first or low > self._end:
            # frames before the held run (released earlier) or past a gap: start a new run
            self._first = self._end = low
        self._compute_up_to(high)
        if frame_ids == list(range(low, high + 1)):
            rows = slice(low - self._first, high + 1 - self._first)
            return {key: buffer[rows] for key, buffer in self._buffers.items()}
        index = torch.tensor([f - self._first for f in frame_ids])
        return {
            key: buffer.index_select(0, index.to(buffer.device))
            for key, buffer in self._buffers.items()
        }

    def release_before(self, frame: int) -> None:
        """Drop the frames < `frame`; the frames kept move to the front of the buffers."""
        if frame <= self._first:
            return
        if frame >= self._end:
            self._first = self._end = frame
            return
        drop, keep = frame - self._first, self._end - frame
        for buffer in self._buffers.values():
            # in blocks of `drop` rows, front to back: a block's source lies after its destination
            # and does not overlap it, and no block reads rows already overwritten
            for start in range(0, keep, drop):
                rows = min(drop, keep - start)
                buffer[start : start + rows].copy_(buffer[start + drop : start + drop + rows])
        self._first = frame

    def __len__(self) -> int:
        """Frames held."""
        return self._end - self._first


def fold_frozen_batchnorm(backbone: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of a detectron2 backbone with every FrozenBatchNorm2d folded into its conv.

    conv -> FrozenBN(x) = x * s + (b - mean * s), s = weight / sqrt(var + eps), becomes one conv
    with weight * s and bias (conv_bias * s + b - mean * s): the same function up to float rounding,
    one memory pass less per conv (FrozenBN is ~15% of a ResNet-50's CPU inference time). Parameters
    of the copy do not require grad; the original is untouched.
    """
    import copy

    from detectron2.layers import Conv2d, FrozenBatchNorm2d

    fused = copy.deepcopy(backbone)
    for module in fused.modules():
        if isinstance(module, Conv2d) and isinstance(module.norm, FrozenBatchNorm2d):
            bn = module.norm
            scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
            bias = bn.bias - bn.running_mean * scale
            if module.bias is not None:
                bias = bias + module.bias * scale
            module.weight = torch.nn.Parameter(
                (module.weight * scale.view(-1, 1, 1, 1)).detach(), requires_grad=False
            )
            module.bias = torch.nn.Parameter(bias.detach(), requires_grad=False)
            module.norm = None
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


class FoldedBackboneCache:
    """Keeps ``fold_frozen_batchnorm(backbone)`` for inference and rebuilds it whenever any
    parameter or buffer of the backbone changed (loaded checkpoint, optimizer step, device move).

    Not an nn.Module attribute of the model on purpose: the copy must not appear in state_dict,
    parameters() or the optimizer.
    """

    def __init__(self):
        self._key = None
        self._folded = None

    @staticmethod
    def _state_key(backbone: torch.nn.Module):
        tensors = list(backbone.parameters()) + list(backbone.buffers())
        return tuple((t.data_ptr(), t._version, t.device.type) for t in tensors)

    def get(self, backbone: torch.nn.Module) -> torch.nn.Module:
        key = self._state_key(backbone)
        if key != self._key:
            self._folded = fold_frozen_batchnorm(backbone).eval()
            self._key = key
        return self._folded
