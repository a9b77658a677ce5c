"""Lazy frame reading for videos of any length: a video file (anything OpenCV reads) or a folder of
frame images, seen as a sequence whose frames are decoded only when indexed.

    frames = open_frames("clip.mp4")          # counts the frames, decodes none of them into RAM
    len(frames), frames.height, frames.width, frames.fps
    frame = frames[10]                        # HxWx3 uint8 BGR numpy array, decoded now
    model_frames = MappedFrames(frames, to_model_input)   # lazily transformed view (e.g. resize)

Random access into a compressed video is slow, but the models read frames in increasing order (one
chunk or window at a time), so a video file is decoded sequentially, with a small cache of recent
frames for overlapping windows; going backwards further than the cache reopens the file and skips
forward. Memory stays bounded by the cache size, whatever the length of the video.
"""

import collections
import os
import re
from typing import Callable, Iterator, List, Optional, Sequence, Union

import numpy as np

__all__ = [
    "VideoReadError",
    "FrameSource",
    "VideoFileFrames",
    "FrameFolderFrames",
    "MappedFrames",
    "read_indexed",
    "open_frames",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_indexed(index: Union[int, slice], length: int, read: Callable[[int], object], what=""):
    """Python sequence indexing over frames 0..length-1 that `read(i)` produces: a slice -> the
    list of its frames, an int (negative counts from the end) -> that frame; IndexError (prefixed
    with `what`) outside [0, length)."""
    if isinstance(index, slice):
        return [read(i) for i in range(*index.indices(length))]
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{what}frame {index} outside [0, {length})")
    return read(index)


class VideoReadError(RuntimeError):
    """A video or frame folder that cannot be read; the message names the path (and frame)."""


def _natural_key(name: str):
    """'frame_2.jpg' sorts before 'frame_10.jpg'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class FrameSource(Sequence):
    """A read-only sequence of frames, each an HxWx3 uint8 BGR array (OpenCV's layout).

    Attributes: path, height, width, fps (frames per second; a default for frame folders).
    Indexing with an int decodes that frame; with a slice returns a list of frames.
    """

    path: str
    height: int
    width: int
    fps: float

    def _read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: Union[int, slice]):
        return read_indexed(index, len(self), self._read, what=f"{self.path}: ")

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoFileFrames(FrameSource):
    """Frames of a video file, decoded on demand with OpenCV.

    The number of frames is found by one pass of `grab()` at open time (container metadata is often
    wrong), which decodes but keeps nothing. `cache_size` recent frames are kept for re-reads.
    """

    def __init__(self, path: str, *, cache_size: int = 8, max_frames: Optional[int] = None):
        import cv2

        self._cv2 = cv2
        self.path = path
        if not os.path.isfile(path):
            raise VideoReadError(f"video file {path!r} does not exist")
        cap = self._open()
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            ok, first = cap.read()
            if not ok or first is None:
                raise VideoReadError(
                    f"video file {path!r}: OpenCV opened it but could not decode any frame"
                )
            count = 1
            while (max_frames is None or count < max_frames) and cap.grab():
                count += 1
        finally:
            cap.release()
        self._length = count
        self.height, self.width = int(first.shape[0]), int(first.shape[1])
        # Some containers report 0 or NaN frames per second; 25 is a neutral playback default.
        self.fps = fps if np.isfinite(fps) and fps > 0 else 25.0
        self._cache: "collections.OrderedDict[int, np.ndarray]" = collections.OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._cache[0] = first
        self._cap = None
        self._next = 0  # index of the frame the open capture will decode next

    def _open(self):
        cap = self._cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise VideoReadError(
                f"video file {self.path!r} cannot be opened by OpenCV (unsupported format or "
                "corrupt file)"
            )
        return cap

    def __len__(self) -> int:
        return self._length

    def _read(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self._cap is None or index < self._next:
            # Backwards beyond the cache (rare): reopen and skip forward, since seeking by frame
            # number is inexact for many codecs.
            self.close()
            self._cap, self._next = self._open(), 0
        while self._next < index:
            if not self._cap.grab():
                raise VideoReadError(
                    f"video file {self.path!r}: frame {self._next} cannot be decoded"
                )
            self._next += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise VideoReadError(f"video file {self.path!r}: frame {index} cannot be decoded")
        self._next = index + 1
        if frame.shape[:2] != (self.height, self.width):
            raise VideoReadError(
                f"video file {self.path!r}: frame {index} has size {frame.shape[:2]}, "
                f"frame 0 has {(self.height, self.width)}"
            )
        self._cache[index] = frame
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FrameFolderFrames(FrameSource):
    """Frames stored as image files in one folder, in natural name order (frame_2 before
    frame_10)."""

    def __init__(self, path: str, *, max_frames: Optional[int] = None, fps: float = 25.0):
        import cv2

        self._cv2 = cv2
        self.path = path
        names = sorted(
            (n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key
        )
        if not names:
            raise VideoReadError(
                f"frame folder {path!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})"
            )
        if max_frames is not None:
            names = names[:max_frames]
        self.files: List[str] = [os.path.join(path, n) for n in names]
        self.fps = float(fps)
        first = self._imread(0)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def __len__(self) -> int:
        return len(self.files)

    def _imread(self, index: int) -> np.ndarray:
        file = self.files[index]
        frame = self._cv2.imread(file, self._cv2.IMREAD_COLOR)
        if frame is None:
            raise VideoReadError(
                f"frame folder {self.path!r}: cannot read image {file!r} (frame {index})"
            )
        return frame

    def _read(self, index: int) -> np.ndarray:
        frame = self._imread(index)
        if frame.shape[:2] != (self.height, self.width):
            raise VideoReadError(
                f"frame folder {self.path!r}: {self.files[index]!r} has size {frame.shape[:2]}, "
                f"the first frame has {(self.height, self.width)}; all frames must have one size"
            )
        return frame


def open_frames(path: str, *, max_frames: Optional[int] = None, cache_size: int = 8) -> FrameSource:
    """A video file or a folder of frame images -> a lazy FrameSource. Raises VideoReadError with
    the path when it does not exist, is empty or cannot be decoded."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if os.path.isdir(path):
        return FrameFolderFrames(path, max_frames=max_frames)
    if not os.path.exists(path):
        raise VideoReadError(
            f"input {path!r} does not exist (expected a video file or a folder of frames)"
        )
    return VideoFileFrames(path, cache_size=cache_size, max_frames=max_frames)


class MappedFrames(Sequence):
    """A lazy view `fn(source[i])` of a frame sequence, for the model's "image" input.

    `fn` runs when a frame is indexed (nothing is precomputed); `on_first_read(i)` is called the
    first time frame i is produced (used to drive a progress bar while the model consumes the
    video).
    """

    def __init__(
        self,
        source: Sequence,
        fn: Callable,
        *,
        on_first_read: Optional[Callable[[int], None]] = None,
    ):
        self.source = source
        self.fn = fn
        self.on_first_read = on_first_read
        self._seen = set()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: Union[int, slice]):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        out = self.fn(self.source[index])
        if self.on_first_read is not None and index not in self._seen:
            self._seen.add(index)
            self.on_first_read(index)
        return out

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> bool:
        return len(self) > 0
