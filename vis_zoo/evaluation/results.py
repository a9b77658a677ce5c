"""Model output -> YouTube-VIS results entries (the CodaLab submission format), and results files.

A results entry is one predicted track:
    {"video_id": int, "category_id": dataset category id, "score": float,
     "segmentations": [compressed RLE {"size": [H, W], "counts": str} or None] * T}
"""

import contextlib
import json
import os
import zipfile
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

from vis_zoo.utils.io import atomic_open

# One copy of the results-file reader: it lives with the metric, which tools/evaluate.py loads
# without the rest of the package.
from .ytvis_metric import load_results_file

__all__ = [
    "rle_to_json",
    "encode_track_masks",
    "video_output_to_results",
    "video_output_entries",
    "ResultsJsonWriter",
    "write_results",
    "write_results_zip",
    "load_results_file",
    "invert_id_map",
]


def rle_to_json(rle: dict) -> dict:
    """A pycocotools RLE with bytes counts -> a JSON-serialisable one (counts as str)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _to_numpy(x):
    """torch tensor (any device) or array-like -> numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def encode_track_masks(masks) -> List[dict]:
    """Binary masks of one track, [T, H, W] (bool tensor or array) -> T compressed RLEs (str
    counts).

    Every frame is encoded, empty ones included (an all-zero mask scores like an absent one).
    """
    arr = _to_numpy(masks)
    if arr.ndim != 3:
        raise ValueError(f"track masks must be [T, H, W], got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        raise ValueError("track masks must be boolean (threshold probabilities before encoding)")
    # pycocotools wants a Fortran-ordered uint8 [H, W, N] array.
    fortran = np.asfortranarray(arr.astype(np.uint8, copy=False).transpose(1, 2, 0))
    return [rle_to_json(r) for r in mask_util.encode(fortran)]


def _checked_rle_frames(
    frames: Sequence, length: int, height: int, width: int, what: str
) -> Iterator[Optional[dict]]:
    """The T frames of one track as JSON-ready compressed RLEs (or None), checked and converted one
    at a time (a long video's track is never all in memory)."""
    if len(frames) != length:
        raise ValueError(f"{what}: {len(frames)} frames of masks, the video has {length}")
    for t, rle in enumerate(frames):
        if rle is None:
            yield None
            continue
        if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
            raise ValueError(
                f"{what}, frame {t}: expected an RLE dict or None, got {type(rle).__name__}"
            )
        size = [int(s) for s in rle["size"]]
        if size != [height, width]:
            raise ValueError(
                f"{what}, frame {t}: mask size {size} != video size [{height}, {width}]"
            )
        if isinstance(rle["counts"], list):  # uncompressed RLE -> compressed
            rle = mask_util.frPyObjects(dict(rle), height, width)
        yield rle_to_json(rle)


def video_output_entries(
    video_id,
    output: Mapping,
    *,
    length: int,
    height: int,
    width: int,
    contiguous_to_dataset_id: Optional[Mapping[int, int]] = None,
) -> Iterator[dict]:
    """`video_output_to_results`, one entry at a time, each entry's "segmentations" an iterator
    that checks and converts the track's masks frame by frame when consumed."""
    what = f"video {video_id}"
    for key in ("pred_scores", "pred_labels", "pred_masks"):
        if key not in output:
            raise ValueError(f"{what}: model output has no '{key}' (keys: {sorted(output)})")
    scores = _to_numpy(output["pred_scores"]).reshape(-1).astype(np.float64)
    labels = _to_numpy(output["pred_labels"]).reshape(-1).astype(np.int64)
    masks = output["pred_masks"]
    if len(scores) != len(labels) or len(scores) != len(masks):
        raise ValueError(
            f"{what}: {len(scores)} scores, {len(labels)} labels and {len(masks)} masks (must be "
            "equal)"
        )
    for i in range(len(scores)):
        label = int(labels[i])
        if contiguous_to_dataset_id is not None:
            if label not in contiguous_to_dataset_id:
                raise ValueError(
                    f"{what}: predicted label {label} is not a contiguous id of the dataset"
                )
            category_id = int(contiguous_to_dataset_id[label])
        else:
            category_id = label
        track = masks[i]
        if not hasattr(
            track, "shape"
        ):  # T RLE dicts / None: a list, or the model's on-disk sequence
            segmentations = _checked_rle_frames(track, length, height, width, f"{what}, track {i}")
        else:
            arr = track
            shape = tuple(arr.shape)
            if len(shape) != 3:
                raise ValueError(f"{what}, track {i}: masks must be [T, H, W], got shape {shape}")
            if shape[0] != length:
                raise ValueError(
                    f"{what}, track {i}: {shape[0]} frames of masks, the video has {length}"
                )
            if shape[1:] != (height, width):
                raise ValueError(
                    f"{what}, track {i}: mask size {list(shape[1:])} != video size [{height}, "
                    f"{width}]"
                )
            segmentations = iter(encode_track_masks(arr))
        yield {
            "video_id": video_id,
            "category_id": category_id,
            "score": float(scores[i]),
            "segmentations": segmentations,
        }


def video_output_to_results(video_id, output: Mapping, **video) -> List[dict]:
    """Convert one video's model output into results entries (`video`: the keyword arguments of
    `video_output_entries`: length, height, width, contiguous_to_dataset_id).

    output: {"pred_scores": [K] float, "pred_labels": [K] long (contiguous ids), "pred_masks": K
    entries, each a bool [T, H, W] tensor/array at the original resolution or a sequence of T RLE
    dicts / None (a list, or a `StoredTrackMasks` read from disk frame by frame)}. `length`,
    `height`, `width` are the video's (from the dataset); a mismatch raises a ValueError naming the
    video. `contiguous_to_dataset_id` maps labels to dataset category ids
    (identity when None).
    """
    entries = video_output_entries(video_id, output, **video)
    return [dict(e, segmentations=list(e["segmentations"])) for e in entries]


class ResultsJsonWriter:
    """A results file (a JSON list of results entries) written entry by entry, frame by frame, as
    the videos are processed: memory holds one frame's mask at a time, whatever the length of the
    videos. The file is written under a temporary name next to `path` and appears at `path`, whole,
    only on `close()` (`vis_zoo.utils.io.atomic_open`); `abort()` (or an exception inside a `with`
    block) removes it. `entries` counts the entries written.

        with ResultsJsonWriter("out/results.json") as writer:
            writer.add_video(video_id, output, length=T, height=H, width=W)
    """

    def __init__(self, path: str):
        self.path = path
        self.entries = 0
        self._stack = contextlib.ExitStack()
        self._file = self._stack.enter_context(atomic_open(path, "w"))
        self._file.write("[")

    def write_entry(self, entry: Mapping) -> None:
        """One entry; its "segmentations" may be any iterable of RLE dicts / None."""
        head = {k: v for k, v in entry.items() if k != "segmentations"}
        text = json.dumps(head)
        # json.dumps's own separators: the same bytes as json.dumps of the whole list
        self._file.write((", " if self.entries else "") + text[:-1] + ', "segmentations": [')
        for t, rle in enumerate(entry["segmentations"]):
            self._file.write((", " if t else "") + json.dumps(rle))
        self._file.write("]}")
        self.entries += 1

    def add_video(self, video_id, output: Mapping, **video) -> int:
        """Every track of one model output (`video_output_entries` arguments); returns how many."""
        before = self.entries
        for entry in video_output_entries(video_id, output, **video):
            self.write_entry(entry)
        return self.entries - before

    def copy_entries_from(self, path: str, entries: int, block_chars: int = 1 << 20) -> None:
        """Append the `entries` entries of the results file `path`, which a `ResultsJsonWriter`
        wrote (`[entry, entry, ...]` with no surrounding whitespace), as JSON text copied in blocks
        of `block_chars` characters: the file is never parsed nor held in memory whole."""
        what = f"results file {path!r}"
        with open(path, "r", encoding="utf-8") as f:
            if f.read(1) != "[":
                raise ValueError(f"{what} does not start with '['")
            pending, copied = "", False  # the last block is held back to drop the closing "]"
            while True:
                block = f.read(block_chars)
                if not block:
                    break
                if pending:
                    if not copied:
                        self._file.write(", " if self.entries else "")
                        copied = True
                    self._file.write(pending)
                pending = block
            if not pending.endswith("]"):
                raise ValueError(f"{what} does not end with ']' (incomplete?)")
            pending = pending[:-1]
            if pending and not copied:
                self._file.write(", " if self.entries else "")
                copied = True
            self._file.write(pending)
        if copied != (entries > 0):
            found = "some" if copied else "none"
            raise ValueError(f"{what} holds {found} of the {entries} entries expected")
        self.entries += entries

    def close(self) -> str:
        self._file.write("]")
        self._stack.close()
        return self.path

    def abort(self) -> None:
        error = RuntimeError("results file abandoned")
        self._stack.__exit__(type(error), error, None)

    def __enter__(self) -> "ResultsJsonWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_results_zip(json_path: str, zip_path: str) -> str:
    """`zip_path` holding `json_path` as "results.json" (the CodaLab submission), copied in blocks
    and written atomically."""
    with atomic_open(zip_path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(json_path, "results.json")
    return zip_path


def write_results(results: List[dict], output_dir: str, name: str = "results") -> Tuple[str, str]:
    """Write `<name>.json` and `<name>.zip` (holding `results.json`: the CodaLab submission),
    each atomically. Returns the two paths."""
    json_path = os.path.join(output_dir, f"{name}.json")
    with ResultsJsonWriter(json_path) as writer:
        for entry in results:
            writer.write_entry(entry)
    return json_path, write_results_zip(json_path, os.path.join(output_dir, f"{name}.zip"))


def invert_id_map(dataset_id_to_contiguous_id: Mapping[int, int]) -> Dict[int, int]:
    """metadata.thing_dataset_id_to_contiguous_id -> {contiguous id: dataset id}."""
    return {int(v): int(k) for k, v in dataset_id_to_contiguous_id.items()}
