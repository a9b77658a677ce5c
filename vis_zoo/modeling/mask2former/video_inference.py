"""Bounded-memory video inference on the Mask2Former frame detector, shared by VITA and MinVIS.

Both methods run the detector over a video's frames in small chunks and keep, per frame, only its
query vectors (a few hundred floats per query); the /4 mask logits of every query (Q·H/4·W/4
floats per frame) are never materialised. Each chunk's projected mask features [t, C, H/4, W/4]
are handed to the caller with the chunk's queries (MinVIS renders its masks from them at once)
and, when the caller needs them again later (VITA: its video queries are known only after the
last frame), kept in a `MaskFeatureStore`: in memory, in a temporary file, or recomputed from
the frames on demand, as MODEL.VIS.TEST_FEATURE_STORE says.

    check_detector_pass_settings(chunk_size, cpu_pixels_per_pass, feature_store)  # at build
    detected = run_frame_detector(frames, backbone=..., head=..., chunk_size=18,
    cpu_pixels_per_pass=...,
                                  feature_store="auto", project_mask_features=..., on_chunk=collect)
    scores, labels, query_idx = top_query_class_pairs(class_logits, k)
    masks, mask_scores = render_video_masks(embed[query_idx], detected.mask_features, ...)
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vis_zoo.modeling.backbone import normalize_and_pad
from vis_zoo.modeling.postprocessing import VideoMaskWriter
from vis_zoo.utils.allocator import FreedMemoryTrimmer

__all__ = [
    "FEATURE_STORES",
    "feature_store_kind",
    "folder_file_system",
    "frames_per_detector_pass",
    "check_detector_pass_settings",
    "frame_detector_test_kwargs",
    "MaskFeatureStore",
    "MemoryFeatureStore",
    "DiskFeatureStore",
    "RecomputedFeatureStore",
    "DetectorChunk",
    "DetectedFrames",
    "run_frame_detector",
    "top_query_class_pairs",
    "mask_logits_to_output",
    "render_video_masks",
]

# Up to this many frames the mask features stay on the model's device with the "auto" store (as the
# official VITA and MinVIS keep a whole 36-frame window there).
AUTO_STORE_MAX_FRAMES_ON_DEVICE = 36

FEATURE_STORES = ("auto", "device", "cpu", "disk", "recompute")


# File systems whose files live in memory: a feature file there would be resident memory again.
MEMORY_FILE_SYSTEMS = ("tmpfs", "ramfs")


def folder_file_system(path: str, mounts_file: str = "/proc/mounts") -> Optional[str]:
    """The type of the file system holding `path` ("ext4", "tmpfs", ...), from the longest mount
    point above it in `mounts_file`; None where that table cannot be read (not Linux)."""
    try:
        with open(mounts_file) as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return None
    path = os.path.realpath(path)
    best, best_type = "", None
    for mount_point, fs_type in mounts:
        mount_point = mount_point.replace("\\040", " ")  # spaces are escaped in the table
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def feature_store_kind(
    mode: str,
    device: torch.device,
    num_frames: int,
    frame_bytes: int,
    memory_budget_mb: float,
    store_dir: Optional[str] = None,
) -> str:
    """Where a video's mask features are kept: "device", "cpu", "disk" or "recompute".

    "auto": on the model's device up to 36 frames; in CPU memory while the whole video's features
    (`num_frames` x `frame_bytes`) fit in `memory_budget_mb`; beyond, on a CPU model, in a
    temporary file in `store_dir` (the system temporary folder when empty) while they take at most
    half of that disk's free space and the folder is not in memory (tmpfs), else (and on other
    devices) recomputed in a second pass over the frames. On CPU the file is the faster of the
    two (R-50, 300 frames at 180x320: 1.6x less time for the whole call, same peak memory;
    docs/long_videos.md); recomputing needs no disk, so an hour of video (1.7 TB of features at
    360x640) still runs. Any other mode is taken as it is.
    """
    if mode not in FEATURE_STORES:
        raise ValueError(f"feature store must be one of {'/'.join(FEATURE_STORES)}, got {mode!r}")
    if mode != "auto":
        return mode
    if num_frames <= AUTO_STORE_MAX_FRAMES_ON_DEVICE:
        return "device"
    total_bytes = num_frames * frame_bytes
    if total_bytes <= memory_budget_mb * 2**20:
        return "cpu"
    if device.type == "cpu":
        folder = store_dir or tempfile.gettempdir()
        if folder_file_system(folder) not in MEMORY_FILE_SYSTEMS:
            if 2 * total_bytes <= shutil.disk_usage(folder).free:
                return "disk"
    return "recompute"


def frames_per_detector_pass(
    frame_hw: Tuple[int, int], device: torch.device, chunk_size: int, cpu_pixels_per_pass: int
) -> int:
    """Frames per detector pass: `chunk_size` on CUDA; on CPU as many frames of `frame_hw` as fit in
    `cpu_pixels_per_pass` (at least 1, at most `chunk_size`).

    Why a pixel budget on CPU: a pass over many 360x640 frames makes temporaries of 100-350 MB (the
    pixel decoder's FFN hidden, the /4 maps) that glibc maps fresh for every allocation (page faults
    on first touch), while temporaries under its 32 MB mmap threshold are reused; small frames, on
    the other hand, run fastest in large passes (per-pass overhead). Outputs do not depend on it.
    """
    if chunk_size < 1 or cpu_pixels_per_pass < 1:
        raise ValueError(
            f"detector pass sizes must be >= 1, got {chunk_size} frames and "
            f"{cpu_pixels_per_pass} pixels"
        )
    if device.type != "cpu":
        return chunk_size
    pixels = max(1, int(frame_hw[0]) * int(frame_hw[1]))
    return max(1, min(chunk_size, cpu_pixels_per_pass // pixels))


def check_detector_pass_settings(
    chunk_size: int, cpu_pixels_per_pass: int, feature_store: str
) -> None:
    """Raise a ValueError naming the config key (MODEL.VIS.TEST_CHUNK_SIZE, TEST_CHUNK_PIXELS_CPU,
    TEST_FEATURE_STORE) when a test-time detector setting is invalid."""
    if chunk_size < 1 or cpu_pixels_per_pass < 1:
        raise ValueError(
            f"MODEL.VIS.TEST_CHUNK_SIZE and MODEL.VIS.TEST_CHUNK_PIXELS_CPU must be >= 1, got "
            f"{chunk_size} and {cpu_pixels_per_pass}"
        )
    if feature_store not in FEATURE_STORES:
        raise ValueError(
            f"MODEL.VIS.TEST_FEATURE_STORE must be one of {'/'.join(FEATURE_STORES)}, "
            f"got {feature_store!r}"
        )


def frame_detector_test_kwargs(cfg) -> dict:
    """The test settings of the meta-architectures that run the detector frame by frame (MinVIS,
    VITA), from cfg.MODEL.VIS and cfg.TEST, as their `__init__` keyword arguments."""
    vis = cfg.MODEL.VIS
    return {
        "test_topk_per_video": min(cfg.TEST.DETECTIONS_PER_IMAGE, vis.MAX_NUM_TRACKS),
        "test_chunk_size": vis.TEST_CHUNK_SIZE,
        "test_chunk_pixels_cpu": vis.TEST_CHUNK_PIXELS_CPU,
        "test_interpolate_chunk_size": vis.TEST_INTERPOLATE_CHUNK_SIZE,
        "test_feature_store": vis.TEST_FEATURE_STORE,
        "test_store_dir": vis.TEST_STORE_DIR,
        "output_rle": vis.OUTPUT_RLE,
    }


class MaskFeatureStore:
    """A video's per-frame mask features [T, C, h4, w4]: `add(start, features [t, C, h4, w4])` in
    frame order while the detector runs, `read(start, end)` -> [end - start, C, h4, w4] after."""

    num_frames: int

    def add(self, start: int, features: Tensor) -> None:
        raise NotImplementedError

    def read(self, start: int, end: int) -> Tensor:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_frames


class MemoryFeatureStore(MaskFeatureStore):
    """One [T, C, h4, w4] buffer on `device`, filled chunk by chunk (collecting chunks in a list and
    concatenating them at the end would hold every frame's features twice at the peak)."""

    def __init__(self, num_frames: int, device: torch.device):
        self.num_frames = int(num_frames)
        self.device = device
        self.features: Optional[Tensor] = None

    def add(self, start: int, features: Tensor) -> None:
        if self.features is None:
            self.features = features.new_empty(
                (self.num_frames, *features.shape[1:]), device=self.device
            )
        self.features[start : start + features.shape[0]] = features

    def read(self, start: int, end: int) -> Tensor:
        return self.features[start:end]


class DiskFeatureStore(MaskFeatureStore):
    """The features in an unnamed temporary file (deleted when the store is garbage-collected or
    the process ends), read back with positioned reads: they occupy the page cache, which the
    kernel evicts under memory pressure, never this process's resident memory."""

    def __init__(self, num_frames: int, directory: Optional[str] = None):
        self.num_frames = int(num_frames)
        self._file = tempfile.TemporaryFile(prefix="vis_zoo_features_", dir=directory or None)
        self._frame_shape: Optional[Tuple[int, ...]] = None
        self._dtype: Optional[torch.dtype] = None

    @property
    def _frame_bytes(self) -> int:
        return int(np.prod(self._frame_shape)) * torch.finfo(self._dtype).bits // 8

    def add(self, start: int, features: Tensor) -> None:
        if self._frame_shape is None:
            self._frame_shape, self._dtype = tuple(features.shape[1:]), features.dtype
        data = features.detach().cpu().contiguous().numpy().tobytes()
        written = os.pwrite(self._file.fileno(), data, start * self._frame_bytes)
        if written != len(data):
            raise OSError(f"DiskFeatureStore: wrote {written} of {len(data)} bytes (disk full?)")

    def read(self, start: int, end: int) -> Tensor:
        out = torch.empty((end - start, *self._frame_shape), dtype=self._dtype)
        buffer = memoryview(out.numpy()).cast("B")
        read = os.preadv(self._file.fileno(), [buffer], start * self._frame_bytes)
        if read != len(buffer):
            raise OSError(f"DiskFeatureStore: frames {start}..{end - 1} were not written")
        return out

    def close(self) -> None:
        self._file.close()


class RecomputedFeatureStore(MaskFeatureStore):
    """Nothing is kept: `read` runs `compute(start, end)` again on the detector's own chunks (so
    the features are bitwise those of the first pass) and keeps only the last chunk computed."""

    def __init__(self, num_frames: int, chunk_size: int, compute: Callable[[int, int], Tensor]):
        self.num_frames = int(num_frames)
        self.chunk_size = int(chunk_size)
        self.compute = compute
        self._chunk_start = -1
        self._chunk: Optional[Tensor] = None
        self.num_computed = 0  # frames recomputed so far

    def add(self, start: int, features: Tensor) -> None:
        pass

    def read(self, start: int, end: int) -> Tensor:
        parts = []
        frame = start
        while frame < end:
            chunk_start = frame - frame % self.chunk_size
            if chunk_start != self._chunk_start:
                self._chunk = None  # free the previous chunk before computing the next
                chunk_end = min(chunk_start + self.chunk_size, self.num_frames)
                self._chunk = self.compute(chunk_start, chunk_end)
                self._chunk_start = chunk_start
                self.num_computed += chunk_end - chunk_start
            stop = min(end, chunk_start + self.chunk_size)
            parts.append(self._chunk[frame - chunk_start : stop - chunk_start])
            frame = stop
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass
class DetectorChunk:
    """One detector pass, as `run_frame_detector` hands it to its caller.

    start: index of the chunk's first frame.
    frame_queries: [L, t, Q, C] (the last L decoder layers); pred_logits: [t, Q, K+1].
    mask_features: the projected /4 pixel features [t, C, h4, w4] on the model's device.
    padded_hw: the detector's padded input size; image_hw: the frames' unpadded size.
    """

    start: int
    frame_queries: Tensor
    pred_logits: Tensor
    mask_features: Tensor
    padded_hw: Tuple[int, int]
    image_hw: Tuple[int, int]


@dataclass
class DetectedFrames:
    """What `run_frame_detector` keeps of a video.

    mask_features: the per-frame projected /4 pixel features [T, C, h4, w4] in a `MaskFeatureStore`
        (None when the caller asked for none).
    padded_hw: the detector's padded input size; image_hw: the frames' unpadded size.
    """

    mask_features: Optional[MaskFeatureStore]
    padded_hw: Tuple[int, int]
    image_hw: Tuple[int, int]


@torch.no_grad()
def run_frame_detector(
    frames: Sequence[Tensor],
    *,
    backbone: nn.Module,
    head: nn.Module,
    pixel_mean: Tensor,
    pixel_std: Tensor,
    size_divisibility: int,
    chunk_size: int,
    cpu_pixels_per_pass: int,
    feature_store: Optional[str],
    project_mask_features: Callable[[Tensor], Tensor],
    on_chunk: Callable[[DetectorChunk], None],
    num_frame_query_layers: int = 1,
    feature_memory_mb: float = 1024.0,
    store_dir: Optional[str] = None,
) -> DetectedFrames:
    """Backbone + Mask2Former head (`head.forward_queries`) over the frames, a few at a time.

    The model's device is `pixel_mean`'s; frames per pass come from `frames_per_detector_pass`
    (`chunk_size` on CUDA, the `cpu_pixels_per_pass` budget on CPU). Frames are indexed one chunk
    at a time, in order, so `frames` may be a lazy sequence that decodes them on demand.

    Args:
        frames: T tensors [3, H, W] (one size for the whole video).
        feature_store: where the mask features are kept (`feature_store_kind`, with
            `feature_memory_mb` and `store_dir` for the file); None keeps none.
        project_mask_features: F4 [t, C4, h4, w4] -> the per-frame features [t, C, h4, w4].
        on_chunk: called with each pass's `DetectorChunk` (queries, class logits, mask features).
    Raises:
        ValueError when frames do not share one size (naming the frames).
    """
    device = pixel_mean.device
    num_frames = len(frames)
    chunk_size = frames_per_detector_pass(
        tuple(frames[0].shape[-2:]), device, chunk_size, cpu_pixels_per_pass
    )

    def detect(start: int, queries: bool):
        images = normalize_and_pad(
            frames[start : start + chunk_size], pixel_mean, pixel_std, size_divisibility
        )
        # channels-last frames: the same convolutions, ~1.3x faster on CPU (oneDNN) and on
        # tensor-core GPUs; only float rounding changes.
        features = backbone(images.tensor.contiguous(memory_format=torch.channels_last))
        if queries:
            out = head.forward_queries(features, num_frame_query_layers=num_frame_query_layers)
        else:
            decoded = head.pixel_decoder(features, compute_mask_features=False)
            out = {"pixel_features": decoded["pixel_features"]}
        return images, out, project_mask_features(out.pop("pixel_features"))

    def recompute(start: int, end: int) -> Tensor:
        return detect(start, queries=False)[2]

    store: Optional[MaskFeatureStore] = None
    feature_shape = padded_hw = image_hw = None
    # the chunks' freed temporaries would otherwise stay resident in the heap, a little more the
    # longer the video (vis_zoo.utils.allocator)
    trimmer = FreedMemoryTrimmer()
    for start in range(0, num_frames, chunk_size):
        images, out, chunk_features = detect(start, queries=True)
        if feature_shape is None:
            feature_shape = tuple(chunk_features.shape[1:])
            frame_bytes = chunk_features[0].numel() * chunk_features.element_size()
            kind = (
                None
                if feature_store is None
                else feature_store_kind(
                    feature_store, device, num_frames, frame_bytes, feature_memory_mb, store_dir
                )
            )
            if kind in ("device", "cpu"):
                store_device = device if kind == "device" else torch.device("cpu")
                store = MemoryFeatureStore(num_frames, store_device)
            elif kind == "disk":
                store = DiskFeatureStore(num_frames, store_dir)
            elif kind == "recompute":
                store = RecomputedFeatureStore(num_frames, chunk_size, recompute)
        elif tuple(chunk_features.shape[1:]) != feature_shape:
            last = start + chunk_features.shape[0] - 1
            raise ValueError(
                f"video frames must share one size: frames {start}..{last} give mask "
                f"features {tuple(chunk_features.shape[1:])}, earlier frames "
                f"{feature_shape}"
            )
        padded_hw, image_hw = tuple(images.tensor.shape[-2:]), tuple(images.image_sizes[0])
        on_chunk(
            DetectorChunk(
                start, out["frame_queries"], out["pred_logits"], chunk_features, padded_hw, image_hw
            )
        )
        if store is not None:
            store.add(start, chunk_features)
        del out, images, chunk_features
        trimmer.step()
    return DetectedFrames(store, padded_hw, image_hw)


def top_query_class_pairs(class_logits: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The k best (query, class) pairs by softmax probability over the flattened Q x K foreground
    classes: a query may be kept with several classes (VITA's and MinVIS's test-time selection).

    Args:
        class_logits: [Q, K+1] (last = no object).
    Returns:
        (scores [k'] sorted descending, labels long [k'], query indices long [k']), k' = min(k,
        Q*K).
    """
    scores = class_logits.softmax(-1)[:, :-1]
    num_classes = scores.shape[1]
    top_scores, top_idx = scores.flatten().topk(min(k, scores.numel()), sorted=True)
    return top_scores, top_idx % num_classes, torch.div(top_idx, num_classes, rounding_mode="floor")


def mask_logits_to_output(
    logits: Tensor,
    *,
    padded_hw: Tuple[int, int],
    image_hw: Tuple[int, int],
    output_hw: Tuple[int, int],
) -> Tuple[Tensor, Tensor, Tensor]:
    """/4 mask logits [k, t, h4, w4] -> (binary masks bool [k, t, H_out, W_out] on the CPU, the
    logits at the input size [k, t, h, w] and their binarisation there, both on the logits' device).

    Resized to the padded input, cropped to the image, resized to the output size and thresholded
    at 0 (= sigmoid > 0.5), as Mask2Former-based methods do."""
    logits = F.interpolate(logits, size=padded_hw, mode="bilinear", align_corners=False)
    logits = logits[:, :, : image_hw[0], : image_hw[1]]
    hard = logits > 0.0
    if tuple(output_hw) == tuple(image_hw):
        # a bilinear resize to the same size (align_corners=False) is the identity: skip it
        binary = hard.cpu()
    else:
        resized = F.interpolate(logits, size=tuple(output_hw), mode="bilinear", align_corners=False)
        binary = (resized > 0.0).cpu()
    return binary, logits, hard


@torch.no_grad()
def render_video_masks(
    mask_embed: Tensor,
    mask_features: Union[Tensor, MaskFeatureStore],
    *,
    padded_hw: Tuple[int, int],
    image_hw: Tuple[int, int],
    output_hw: Tuple[int, int],
    frames_per_step: int,
    output_rle: bool,
    device: torch.device,
    store_dir: Optional[str] = None,
) -> Tuple[List[object], Tensor]:
    """Binary masks of k tracks over T frames, computed `frames_per_step` frames at a time.

    Logits (mask embedding · features at /4) go through `mask_logits_to_output`.

    Args:
        mask_embed: [k, C] (one embedding per track for all frames, as VITA) or [T, k, C] (one per
            frame).
        mask_features: [T, C, h4, w4] (any device; moved to `device` step by step) or a
            `MaskFeatureStore` of them.
        store_dir: folder of the RLE masks' temporary file (`VideoMaskWriter`).
    Returns:
        (per track a bool [T, H_out, W_out] cpu tensor, or with output_rle a `StoredTrackMasks` of
         T RLE dicts; mean foreground probability inside each track's mask at the input size,
         float [k]: the Mask2Former mask score, 0 for an empty mask).
    """
    if isinstance(mask_features, Tensor):
        tensor = mask_features
        mask_features = MemoryFeatureStore(tensor.shape[0], tensor.device)
        mask_features.features = tensor
    num_frames = len(mask_features)
    per_frame = mask_embed.dim() == 3
    if per_frame and mask_embed.shape[0] != num_frames:
        raise ValueError(
            f"render_video_masks: {mask_embed.shape[0]} frames of embeddings for {num_frames} "
            "frames of mask features"
        )
    k = mask_embed.shape[-2]
    numerator = torch.zeros(k, dtype=torch.float32, device=device)
    denominator = torch.zeros(k, dtype=torch.float32, device=device)
    writer = VideoMaskWriter(num_frames, output_hw, output_rle=output_rle, store_dir=store_dir)
    all_tracks = torch.ones(k, dtype=torch.bool)
    trimmer = FreedMemoryTrimmer()
    step = max(1, frames_per_step)
    for start in range(0, num_frames, step):
        feats = mask_features.read(start, min(start + step, num_frames)).to(device)
        t_chunk, _, h4, w4 = feats.shape
        embed = mask_embed[start : start + step].to(device) if per_frame else mask_embed.to(device)
        # [k, C] @ [t, C, h·w] (or [t, k, C] @ [t, C, h·w]) -> [t, k, h·w]: a batched matmul on the
        # features as they are stored (an einsum to "kthw" first copies them into a permuted layout)
        logits = torch.matmul(embed, feats.flatten(2)).view(t_chunk, k, h4, w4).transpose(0, 1)
        binary, logits, hard = mask_logits_to_output(
            logits, padded_hw=padded_hw, image_hw=image_hw, output_hw=output_hw
        )
        numerator += (logits.sigmoid().flatten(1) * hard.flatten(1)).sum(1)
        denominator += hard.flatten(1).sum(1)
        for t in range(t_chunk):
            writer.write_binary(start + t, binary[:, t], all_tracks)
        del logits, hard, binary, feats
        trimmer.step()
    return writer.track_masks(k), numerator / (denominator + 1e-6)
