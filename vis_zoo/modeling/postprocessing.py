"""From per-track, per-frame mask logits and class probabilities to the model-output contract:

    {"image_size": (H, W), "pred_scores": float [K], "pred_labels": long [K],
     "pred_masks": K entries, each bool [T, H, W] (CPU) or a sequence of T RLE dicts / None}

Masks are upsampled one frame at a time straight to the original resolution, so peak memory does
not grow with the video length. RLE masks are appended to a disk-backed `RLEFrameStore` as each
frame is finished, and every track's masks are a `StoredTrackMasks` sequence that reads them back
on demand: the model's memory holds 12 bytes per frame of them, however many tracks and frames.
"""

import os
import tempfile
from collections.abc import Sequence as SequenceABC
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_util
from torch import Tensor

from vis_zoo.utils.video_io import read_indexed


def encode_rle(mask: Tensor) -> dict:
    """bool [H, W] -> COCO compressed RLE with ``counts`` as str (JSON-serialisable)."""
    arr = np.asfortranarray(mask.detach().cpu().numpy().astype(np.uint8))
    rle = mask_util.encode(arr)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def encode_rle_counts(masks: Tensor) -> List[bytes]:
    """bool [n, H, W] (CPU) -> the n compressed RLE ``counts`` strings (bytes), as `encode_rle`
    gives them one mask at a time, encoded in one pycocotools call."""
    if masks.shape[0] == 0:
        return []
    fortran = np.asfortranarray(masks.numpy().astype(np.uint8).transpose(1, 2, 0))
    return [rle["counts"] for rle in mask_util.encode(fortran)]


class RLEFrameStore:
    """The RLE masks of one video's tracks, one record per frame, in an unnamed temporary file.

    `write_frame(frame, counts)` appends frame `frame`'s record: per track its compressed RLE
    ``counts`` (bytes), or None where the track has no mask on that frame. `read(frame, track)`
    gives back {"size": [H, W], "counts": str} or None (also for a track created after the frame
    was written, or a frame never written). Each frame is written at most once, in any order.

    Memory: two numbers per frame (the record's file offset and its number of tracks); the masks
    live in the file, which the operating system deletes when the store is garbage-collected or
    the process ends (no file name is left behind, even after a crash).

    Args:
        video_length: T.
        mask_size: (H, W) of every mask.
        directory: where the file is created; None or "" for the system temporary folder (TMPDIR).
    """

    def __init__(
        self, video_length: int, mask_size: Tuple[int, int], directory: Optional[str] = None
    ):
        self.video_length = int(video_length)
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
        self._file = tempfile.TemporaryFile(prefix="vis_zoo_masks_", dir=directory or None)
        self._offsets = np.full(self.video_length, -1, dtype=np.int64)  # record start per frame
        self._num_tracks = np.zeros(self.video_length, dtype=np.int32)  # tracks in the record
        self._end = 0

    def write_frame(self, frame: int, counts: Sequence[Optional[bytes]]) -> None:
        if not 0 <= frame < self.video_length:
            raise IndexError(f"RLEFrameStore: frame {frame} outside [0, {self.video_length})")
        if self._offsets[frame] >= 0:
            raise ValueError(f"RLEFrameStore: frame {frame} was already written")
        # record: int32 length per track (-1: no mask), then the counts strings back to back
        lengths = np.array([-1 if c is None else len(c) for c in counts], dtype=np.int32)
        record = lengths.tobytes() + b"".join(c for c in counts if c is not None)
        written = os.pwrite(self._file.fileno(), record, self._end)
        if written != len(record):
            raise OSError(f"RLEFrameStore: wrote {written} of {len(record)} bytes (disk full?)")
        self._offsets[frame] = self._end
        self._num_tracks[frame] = len(lengths)
        self._end += len(record)

    def read(self, frame: int, track: int) -> Optional[dict]:
        offset, num_tracks = int(self._offsets[frame]), int(self._num_tracks[frame])
        if offset < 0 or not 0 <= track < num_tracks:
            return None
        fd = self._file.fileno()
        lengths = np.frombuffer(os.pread(fd, 4 * num_tracks, offset), dtype=np.int32)
        if lengths[track] < 0:
            return None
        start = offset + 4 * num_tracks + int(np.clip(lengths[:track], 0, None).sum())
        counts = os.pread(fd, int(lengths[track]), start)
        return {"size": list(self.mask_size), "counts": counts.decode("ascii")}

    def track(self, track: int) -> "StoredTrackMasks":
        return StoredTrackMasks(self, track)

    @property
    def num_bytes(self) -> int:
        """Bytes written to the file so far."""
        return self._end

    def close(self) -> None:
        self._file.close()


class StoredTrackMasks(SequenceABC):
    """One track's masks in an `RLEFrameStore`: a read-only sequence of T RLE dicts / None, read
    from the file when indexed. `mask_size` is (H, W). `list(masks)` gives the in-memory form."""

    def __init__(self, store: RLEFrameStore, track: int):
        self.store = store
        self.track = int(track)
        self.mask_size = store.mask_size

    def __len__(self) -> int:
        return self.store.video_length

    def __getitem__(self, index):
        return read_indexed(index, len(self), lambda t: self.store.read(t, self.track))

    def __repr__(self) -> str:
        return f"StoredTrackMasks(track {self.track}, {len(self)} frames of {self.mask_size})"


class VideoMaskWriter:
    """Collects the final mask of every (track, frame), frame by frame.

    Called as ``writer(frame_idx, logits [n, h, w], valid bool [n])`` for the n tracks known when
    the frame is finalised: logits are bilinearly upsampled (align_corners=False) to ``output_size``
    and thresholded (``> mask_threshold``); invalid entries (track not predicted on that frame) are
    empty. Tracks created after a frame was written are empty on that frame. ``write_binary`` takes
    masks already at the output size.

    With ``output_rle`` every frame goes to an `RLEFrameStore` at once (memory does not grow with
    the video); otherwise bool [H, W] tensors are kept, T x H x W per track.

    Args:
        video_length: T.
        output_size: (H, W) original resolution.
        output_rle: RLE masks on disk instead of bool tensors in memory.
        mask_threshold: on the logits (0.0 = probability 0.5).
        track_chunk: tracks upsampled at once (bounds the float temporary to track_chunk*H*W).
        store_dir: folder of the RLE store's temporary file (None: the system temporary folder).
    """

    def __init__(
        self,
        video_length: int,
        output_size: Tuple[int, int],
        *,
        output_rle: bool = False,
        mask_threshold: float = 0.0,
        track_chunk: int = 16,
        store_dir: Optional[str] = None,
    ):
        self.video_length = video_length
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.output_rle = output_rle
        self.mask_threshold = mask_threshold
        self.track_chunk = max(1, track_chunk)
        self.store = (
            RLEFrameStore(video_length, self.output_size, store_dir) if output_rle else None
        )
        self._frames: List[Dict[int, Tensor]] = []  # bool output: per track, frame -> bool [H, W]

    def __call__(self, frame: int, logits: Tensor, valid: Tensor) -> None:
        if not 0 <= frame < self.video_length:
            raise IndexError(f"VideoMaskWriter: frame {frame} outside [0, {self.video_length})")
        binary = []
        for start in range(0, logits.shape[0], self.track_chunk):
            chunk = logits[start : start + self.track_chunk]
            up = F.interpolate(
                chunk[None].float(), size=self.output_size, mode="bilinear", align_corners=False
            )[0]
            binary.append((up > self.mask_threshold).cpu())
        empty = torch.zeros((0, *self.output_size), dtype=torch.bool)
        self.write_binary(frame, torch.cat(binary) if binary else empty, valid)

    def write_binary(self, frame: int, masks: Tensor, valid: Tensor) -> None:
        """Frame `frame`'s final masks: bool [n, H, W] at the output size (CPU), valid bool [n]."""
        if not 0 <= frame < self.video_length:
            raise IndexError(f"VideoMaskWriter: frame {frame} outside [0, {self.video_length})")
        valid = valid.cpu().tolist()  # one device sync per frame, not per track
        if self.store is not None:
            kept = [j for j, v in enumerate(valid) if v]
            counts: List[Optional[bytes]] = [None] * len(valid)
            for j, c in zip(kept, encode_rle_counts(masks[kept])):
                counts[j] = c
            self.store.write_frame(frame, counts)
            return
        while len(self._frames) < len(valid):
            self._frames.append({})
        for track, is_valid in enumerate(valid):
            if is_valid:
                self._frames[track][frame] = masks[track]

    def track_masks(self, num_tracks: int) -> List[object]:
        """Per track: bool [T, H, W] (cpu), or a `StoredTrackMasks` of T RLE dicts (None where not
        predicted)."""
        if self.store is not None:
            return [self.store.track(track) for track in range(num_tracks)]
        out = []
        height, width = self.output_size
        for track in range(num_tracks):
            masks = torch.zeros((self.video_length, height, width), dtype=torch.bool)
            for f, m in (self._frames[track] if track < len(self._frames) else {}).items():
                masks[f] = m
            out.append(masks)
        return out


def decode_track_masks(track_masks: Sequence[Optional[dict]]) -> Tensor:
    """A track's T RLE dicts / None (a list or a `StoredTrackMasks`) -> bool [T, H, W] (CPU),
    empty where None. The size comes from the first RLE; a track of only None needs `mask_size`."""
    size = getattr(track_masks, "mask_size", None)
    if size is None:
        size = next(tuple(m["size"]) for m in track_masks if m is not None)
    out = torch.zeros((len(track_masks), *size), dtype=torch.bool)
    for frame, rle in enumerate(track_masks):
        if rle is not None:
            counts = rle["counts"]
            if isinstance(counts, str):
                counts = counts.encode("ascii")
            rle = {"size": rle["size"], "counts": counts}
            out[frame] = torch.from_numpy(mask_util.decode(rle).astype(bool))
    return out


def select_track_classes(
    class_probs: Tensor, *, multi_class: bool, class_threshold: float
) -> Tuple[Tensor, Tensor, Tensor]:
    """Which (track, class) pairs to emit.

    Args:
        class_probs: [N, K+1] softmax probabilities, last column = no-object.
        multi_class: emit every (track, class) with prob > class_threshold (IFC's MULTI_CLS_ON), in
            (track, class) row-major order; else one entry per track with its best foreground class.
    Returns:
        track_idx long [E], scores float [E], labels long [E].
    """
    fg = class_probs[:, :-1]
    if multi_class:
        track_idx, labels = torch.where(fg > class_threshold)
        scores = fg[track_idx, labels]
    else:
        scores, labels = (
            fg.max(-1) if fg.shape[0] else (fg.new_zeros(0), fg.new_zeros(0, dtype=torch.long))
        )
        track_idx = torch.arange(fg.shape[0], device=fg.device)
    return track_idx, scores, labels


def build_video_output(
    image_size: Tuple[int, int], scores: Tensor, labels: Tensor, masks: Sequence[object]
) -> dict:
    """The model-output contract dict (scores/labels moved to CPU)."""
    if len(masks) != len(scores) or len(labels) != len(scores):
        raise ValueError(
            f"build_video_output: {len(scores)} scores, {len(labels)} labels, {len(masks)} masks"
        )
    return {
        "image_size": (int(image_size[0]), int(image_size[1])),
        "pred_scores": scores.detach().float().cpu(),
        "pred_labels": labels.detach().long().cpu(),
        "pred_masks": list(masks),
    }


def empty_video_output(image_size: Tuple[int, int]) -> dict:
    return build_video_output(image_size, torch.zeros(0), torch.zeros(0, dtype=torch.long), [])


def track_has_pixels(masks) -> bool:
    """A track's masks (bool [T, H, W], or T RLE dicts / None) have at least one foreground
    pixel."""
    if isinstance(masks, Tensor):
        return bool(masks.any())
    return any(m is not None and mask_util.area(m) > 0 for m in masks)


OUTPUT_KEYS = ("image_size", "pred_scores", "pred_labels", "pred_masks")


def check_video_output(
    output: dict,
    *,
    num_frames: int,
    image_size: Optional[Tuple[int, int]] = None,
    num_classes: Optional[int] = None,
    num_predictions: Optional[int] = None,
    rle: Optional[bool] = None,
) -> None:
    """Raise a ValueError saying what is wrong when `output` breaks the model-output contract.

    The contract (one dict per video): exactly the keys "image_size" (H, W) ints, "pred_scores"
    float32 [K] in [0, 1], "pred_labels" int64 [K] in [0, num_classes), "pred_masks" K entries,
    each bool [num_frames, H, W] or a list (or `StoredTrackMasks`) of num_frames COCO RLE dicts
    (size [H, W], str counts) or None (no mask on that frame). Only shapes, types and the [K]
    vectors are read, never the mask pixels, so the check costs microseconds per video.

    Args:
        image_size: the expected (H, W); None takes the output's own.
        num_classes: K classes, bounding the labels; None skips that bound.
        num_predictions: the expected K; None accepts any.
        rle: True requires RLE masks, False bool tensors, None accepts either.
    """

    def fail(message: str):
        raise ValueError(f"model output breaks the output contract: {message}")

    if not isinstance(output, dict) or set(output) != set(OUTPUT_KEYS):
        fail(
            f"keys {sorted(output) if isinstance(output, dict) else type(output).__name__}, "
            f"expected {sorted(OUTPUT_KEYS)}"
        )
    size = output["image_size"]
    if not (isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        fail(f"image_size {size!r} is not a tuple of two ints")
    if image_size is not None and size != tuple(int(v) for v in image_size):
        fail(f"image_size {size}, expected {tuple(image_size)}")
    scores, labels, masks = output["pred_scores"], output["pred_labels"], output["pred_masks"]
    if not isinstance(scores, Tensor) or scores.dtype != torch.float32 or scores.dim() != 1:
        fail(f"pred_scores must be a float32 [K] tensor, got {_describe(scores)}")
    if not isinstance(labels, Tensor) or labels.dtype != torch.long or labels.shape != scores.shape:
        fail(f"pred_labels must be an int64 [K={len(scores)}] tensor, got {_describe(labels)}")
    if not isinstance(masks, list) or len(masks) != len(scores):
        fail(f"pred_masks must be a list of K={len(scores)} tracks, got {_describe(masks)}")
    if num_predictions is not None and len(scores) != num_predictions:
        fail(f"{len(scores)} predictions, expected {num_predictions}")
    if len(scores) and not bool(((scores >= 0) & (scores <= 1)).all()):
        fail(f"pred_scores outside [0, 1]: min {float(scores.min())}, max {float(scores.max())}")
    if len(labels) and (
        int(labels.min()) < 0 or (num_classes is not None and int(labels.max()) >= num_classes)
    ):
        fail(f"pred_labels outside [0, {num_classes}): {labels.tolist()}")
    height, width = size
    for track, track_masks in enumerate(masks):
        if isinstance(track_masks, Tensor):
            if rle is True:
                fail(f"track {track}: a bool tensor where RLE masks were expected")
            if track_masks.dtype != torch.bool or tuple(track_masks.shape) != (
                num_frames,
                height,
                width,
            ):
                fail(
                    f"track {track}: masks {_describe(track_masks)}, expected bool "
                    f"[{num_frames}, {height}, {width}]"
                )
            continue
        if rle is False:
            fail(f"track {track}: {type(track_masks).__name__} where bool tensors were expected")
        if isinstance(track_masks, StoredTrackMasks):
            # written by VideoMaskWriter in the contract's form: the lengths and sizes say enough
            # (reading a long video's masks back from disk would cost more than the model call)
            if len(track_masks) != num_frames or track_masks.mask_size != (height, width):
                fail(
                    f"track {track}: {_describe(track_masks)}, expected {num_frames} RLE masks of "
                    f"size [{height}, {width}]"
                )
            continue
        if not isinstance(track_masks, (list, tuple)) or len(track_masks) != num_frames:
            fail(
                f"track {track}: {_describe(track_masks)}, expected {num_frames} RLE dicts or None"
            )
        for frame, mask in enumerate(track_masks):
            if mask is None:
                continue
            if not (
                isinstance(mask, dict)
                and tuple(mask.get("size", ())) == (height, width)
                and isinstance(mask.get("counts"), str)
            ):
                fail(
                    f"track {track}, frame {frame}: not a COCO RLE of size [{height}, {width}] "
                    f"with str counts: {str(mask)[:80]}"
                )


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} {list(value.shape)}"
    if isinstance(value, StoredTrackMasks):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__
