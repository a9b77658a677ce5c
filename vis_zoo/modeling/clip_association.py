"""Long-video inference for clip-based methods (VisTR, IFC, SeqFormer): run the model on windows of
``MODEL.VIS.TEST_WINDOW_SIZE`` frames every ``MODEL.VIS.TEST_WINDOW_STRIDE`` frames and join the
windows' instances into video tracks by soft-IoU on the frames they share (IFC's clip-level
tracking, Hwang et al. 2021, Sec. 3.3).

A video no longer than one window is a single clip (every kept instance is a track). Memory is
bounded whatever the video length: per-frame logit sums are kept only for frames a later window can
still cover, finished frames are handed to a sink (``postprocessing.VideoMaskWriter``) at once, and
only the clips overlapping the current window are kept for matching.

Usage from a meta-architecture::

    writer = VideoMaskWriter(T, (H0, W0), output_rle=...)
    class_probs = associate_clip_windows(
        T, clip_fn, window_size=W, window_stride=S, frame_sink=writer,
        on_window_done=cache.release_before)
    masks = writer.track_masks(len(class_probs))

where ``clip_fn(frame_indices) -> ClipPrediction`` runs the model on those frames.
"""

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from vis_zoo.utils.allocator import FreedMemoryTrimmer


@dataclass
class ClipPrediction:
    """The instances one window predicts.

    frame_indices: the t absolute frame indices of the window.
    class_probs: [N, K+1] class probabilities (last = no-object) of the N kept instances.
    mask_logits: [N, t, h, w] mask logits (any fixed resolution, the same for every window).
    """

    frame_indices: List[int]
    class_probs: Tensor
    mask_logits: Tensor

    def __post_init__(self):
        n = self.class_probs.shape[0]
        if (
            self.mask_logits.dim() != 4
            or self.mask_logits.shape[0] != n
            or self.mask_logits.shape[1] != len(self.frame_indices)
        ):
            raise ValueError(
                f"ClipPrediction: mask_logits {tuple(self.mask_logits.shape)} must be [N={n}, "
                f"t={len(self.frame_indices)}, h, w]"
            )


def window_spans(video_length: int, window_size: int, stride: int) -> List[Tuple[int, int]]:
    """[start, end) of every window: starts 0, stride, 2*stride, ...; the first window reaching the
    end is moved back to [max(0, T - window_size), T) and is the last (IFC's loop). A video no
    longer than one window gives the single span [0, T)."""
    return list(iter_window_spans(video_length, window_size, stride))


def iter_window_spans(
    video_length: int, window_size: int, stride: int
) -> Iterator[Tuple[int, int]]:
    """The spans of `window_spans` one at a time (with stride 1 the list would hold a tuple per
    frame, 120 bytes each)."""
    if video_length < 1:
        raise ValueError(f"window_spans: video_length must be >= 1, got {video_length}")
    if window_size < 1 or not 1 <= stride <= window_size:
        raise ValueError(
            f"window_spans: need window_size >= 1 and 1 <= stride <= window_size, "
            f"got window_size={window_size}, stride={stride}"
        )
    for start in range(0, video_length, stride):
        end = start + window_size
        if end >= video_length:
            yield (max(0, video_length - window_size), video_length)
            return
        yield (start, end)


@dataclass
class _StoredClip:
    frames: List[int]
    track_ids: Tensor  # long [n]
    probs: Tensor  # [n, t, h, w] sigmoid of the logits


class SoftIoUTrackAssociator:
    """Joins clip predictions into tracks, as IFC's ``Videos`` does, with bounded memory.

    For a new clip, the score of (track s, instance i) is the soft IoU sum(p_s * p_i) / sum(p_s +
    p_i - p_s * p_i) over the frames (and pixels) the new clip shares with a previous clip
    containing s, averaged over those previous clips. Scores <= ``match_threshold`` are zeroed, a
    Hungarian assignment maximises the total, and pairs above the threshold extend tracks; every
    other instance opens a new track (at most ``max_num_tracks``: beyond it the instances with the
    lowest foreground probability are dropped).

    A track's mask logits on a frame are the mean over the clips that gave it that frame; its class
    probabilities the mean over the clips that contain it. ``frame_sink(frame, logits [n, h, w],
    valid bool [n])`` receives each frame once it is final (see ``finalize_before``).
    """

    def __init__(
        self,
        *,
        max_num_tracks: int = 50,
        match_threshold: float = 0.05,
        frame_sink: Optional[Callable[[int, Tensor, Tensor], None]] = None,
    ):
        if max_num_tracks < 1:
            raise ValueError(f"max_num_tracks must be >= 1, got {max_num_tracks}")
        self.max_num_tracks = max_num_tracks
        self.match_threshold = match_threshold
        self.frame_sink = frame_sink
        self.num_tracks = 0
        self._cls_sum: Optional[Tensor] = None  # [max, K+1]
        self._cls_count: Optional[Tensor] = None  # [max]
        self._frame_sum = {}  # frame -> [max, h, w] logit sums
        self._frame_count = {}  # frame -> [max] number of clips that gave the track this frame
        self._recent: List[_StoredClip] = []
        self._finalized_upto = 0

    def _soft_iou_scores(self, frames: List[int], probs: Tensor) -> Tensor:
        """[num_tracks, N] averaged soft IoU of every saved track against the clip's instances."""
        num_inst = probs.shape[0]
        siou_sum = probs.new_zeros((self.num_tracks, num_inst))
        clip_count = probs.new_zeros((self.num_tracks,))
        position = {f: j for j, f in enumerate(frames)}
        for clip in self._recent:
            common = [(j, position[f]) for j, f in enumerate(clip.frames) if f in position]
            if not common or clip.probs.shape[0] == 0:
                continue
            saved = clip.probs[:, [j for j, _ in common]].flatten(1)  # [n_c, P]
            new = probs[:, [k for _, k in common]].flatten(1)  # [N, P]
            inter = saved @ new.t()
            union = saved.sum(1)[:, None] + new.sum(1)[None, :] - inter
            siou_sum.index_add_(0, clip.track_ids, inter / (union + 1e-6))
            clip_count.index_add_(
                0, clip.track_ids, torch.ones_like(clip.track_ids, dtype=probs.dtype)
            )
        return siou_sum / (clip_count[:, None] + 1e-6)

    def update(self, clip: ClipPrediction) -> Tensor:
        """Add one clip; returns the track id of each of its instances (long [N], -1 = dropped)."""
        frames = list(clip.frame_indices)
        if frames and frames[0] < self._finalized_upto:
            raise ValueError(
                f"clip starts at frame {frames[0]} but frames < {self._finalized_upto} are final"
            )
        logits = clip.mask_logits
        probs = logits.sigmoid()
        num_inst = logits.shape[0]
        device = logits.device
        if self._cls_sum is None:
            self._cls_sum = clip.class_probs.new_zeros(
                (self.max_num_tracks, clip.class_probs.shape[1])
            )
            self._cls_count = clip.class_probs.new_zeros((self.max_num_tracks,))
        # only clips overlapping this one can share frames with it (window starts increase)
        self._recent = [c for c in self._recent if c.frames and c.frames[-1] >= frames[0]]

        assigned = torch.full((num_inst,), -1, dtype=torch.long)
        if self.num_tracks > 0 and num_inst > 0:
            scores = self._soft_iou_scores(frames, probs)
            above = scores > self.match_threshold
            scores = (scores * above.to(scores.dtype)).float().cpu()
            rows, cols = linear_sum_assignment(scores.numpy(), maximize=True)
            above = above.cpu()
            for r, c in zip(rows.tolist(), cols.tolist()):
                if above[r, c]:
                    assigned[c] = r
        new = [i for i in range(num_inst) if assigned[i] < 0]
        room = self.max_num_tracks - self.num_tracks
        if len(new) > room:
            fg = clip.class_probs[new, :-1].max(-1).values.cpu()
            keep = set(
                torch.as_tensor(new)[fg.argsort(descending=True, stable=True)[:room]].tolist()
            )
            new = [i for i in new if i in keep]
        for i in new:
            assigned[i] = self.num_tracks
            self.num_tracks += 1

        kept = (assigned >= 0).nonzero().flatten()
        if kept.numel() == 0:
            return assigned
        track_ids = assigned[kept].to(device)
        kept_dev = kept.to(device)
        self._cls_sum.index_add_(0, track_ids, clip.class_probs[kept_dev])
        self._cls_count.index_add_(
            0, track_ids, torch.ones_like(track_ids, dtype=self._cls_count.dtype)
        )
        height, width = logits.shape[-2:]
        for j, f in enumerate(frames):
            if f not in self._frame_sum:
                self._frame_sum[f] = logits.new_zeros((self.max_num_tracks, height, width))
                self._frame_count[f] = logits.new_zeros((self.max_num_tracks,))
            self._frame_sum[f].index_add_(0, track_ids, logits[kept_dev, j])
            self._frame_count[f].index_add_(
                0, track_ids, torch.ones_like(track_ids, dtype=logits.dtype)
            )
        self._recent.append(_StoredClip(frames, track_ids, probs[kept_dev]))
        return assigned

    def finalize_before(self, frame: int) -> None:
        """Frames < `frame` will not be covered again: average their logits and send them to the
        sink."""
        for f in sorted(k for k in self._frame_sum if k < frame):
            total = self._frame_sum.pop(f)[: self.num_tracks]
            count = self._frame_count.pop(f)[: self.num_tracks]
            valid = count > 0
            if self.frame_sink is not None:
                self.frame_sink(f, total / count.clamp(min=1)[:, None, None], valid)
        self._finalized_upto = max(self._finalized_upto, frame)

    def finish(self) -> Tensor:
        """Finalise every frame; returns the tracks' mean class probabilities [num_tracks, K+1]."""
        self.finalize_before(float("inf"))
        self._recent = []
        if self._cls_sum is None:
            return torch.zeros((0, 0))
        n = self.num_tracks
        return self._cls_sum[:n] / self._cls_count[:n, None].clamp(min=1)


def associate_clip_windows(
    video_length: int,
    clip_fn: Callable[[List[int]], ClipPrediction],
    *,
    window_size: int,
    window_stride: int,
    max_num_tracks: int = 50,
    match_threshold: float = 0.05,
    frame_sink: Optional[Callable[[int, Tensor, Tensor], None]] = None,
    on_window_done: Optional[Callable[[int], None]] = None,
) -> Tensor:
    """Run `clip_fn` on every window of the video and join the windows into tracks.

    Args:
        video_length: T.
        clip_fn: frame indices (one window) -> ClipPrediction.
        window_size, window_stride: see ``window_spans``.
        frame_sink: receives every final frame's per-track logits (e.g. a ``VideoMaskWriter``).
        on_window_done: called with the first frame any later window needs (to release cached
            per-frame features below it).
    Returns:
        class probabilities of the tracks, [num_tracks, K+1] (num_tracks may be 0).
    """
    associator = SoftIoUTrackAssociator(
        max_num_tracks=max_num_tracks, match_threshold=match_threshold, frame_sink=frame_sink
    )
    spans = iter_window_spans(video_length, window_size, window_stride)
    # the windows' freed temporaries would otherwise stay resident in the heap, a little more the
    # longer the video (vis_zoo.utils.allocator)
    trimmer = FreedMemoryTrimmer()
    span = next(spans)
    while span is not None:
        start, end = span
        associator.update(clip_fn(list(range(start, end))))
        span = next(spans, None)
        next_start = span[0] if span is not None else video_length
        associator.finalize_before(next_start)
        if on_window_done is not None:
            on_window_done(next_start)
        trimmer.step()
    return associator.finish()
