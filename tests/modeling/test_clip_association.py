import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from scipy.optimize import linear_sum_assignment

from vis_zoo.modeling import (
    ClipPrediction,
    FrameFeatureCache,
    RLEFrameStore,
    SoftIoUTrackAssociator,
    VideoMaskWriter,
    associate_clip_windows,
    decode_track_masks,
    encode_rle,
    select_track_classes,
    window_spans,
)
from vis_zoo.modeling.postprocessing import encode_rle_counts


def test_window_spans():
    assert window_spans(40, 36, 18) == [(0, 36), (4, 40)]
    assert window_spans(7, 5, 1) == [(0, 5), (1, 6), (2, 7)]
    assert window_spans(3, 36, 18) == [(0, 3)]
    assert window_spans(1, 5, 2) == [(0, 1)]
    assert window_spans(10, 4, 4) == [(0, 4), (4, 8), (6, 10)]
    with pytest.raises(ValueError):
        window_spans(10, 4, 5)  # frames would be skipped
    with pytest.raises(ValueError):
        window_spans(0, 4, 2)


def _moving_objects(length, h=8, w=12):
    """Two boxes moving right; GT masks [2, T, h, w]."""
    masks = torch.zeros(2, length, h, w, dtype=torch.bool)
    for t in range(length):
        masks[0, t, 1:4, t % 6 : t % 6 + 4] = True
        masks[1, t, 5:8, 8 - t % 6 : 12 - t % 6] = True
    return masks


def _oracle_clip_fn(gt, num_classes=3, calls=None):
    """A model that sees GT: instances in a different order in every window, plus class probs."""

    def clip_fn(frames):
        if calls is not None:
            calls.append(list(frames))
        order = [1, 0] if frames[0] % 2 else [0, 1]
        logits = torch.where(gt[order][:, frames], 5.0, -5.0)
        probs = torch.zeros(2, num_classes + 1)
        for row, obj in enumerate(order):
            probs[row, obj] = 0.9
            probs[row, -1] = 0.1
        return ClipPrediction(list(frames), probs, logits)

    return clip_fn


@pytest.mark.parametrize("window,stride", [(4, 2), (3, 1), (20, 10)])
def test_windows_give_consistent_tracks(window, stride):
    length = 11
    gt = _moving_objects(length)
    writer = VideoMaskWriter(length, (8, 12))
    released, calls = [], []
    probs = associate_clip_windows(
        length,
        _oracle_clip_fn(gt, calls=calls),
        window_size=window,
        window_stride=stride,
        frame_sink=writer,
        on_window_done=released.append,
    )
    assert probs.shape == (2, 4)
    masks = writer.track_masks(2)
    for track in range(2):
        obj = int(probs[track, :-1].argmax())
        assert torch.allclose(probs[track, obj], torch.tensor(0.9))
        assert torch.equal(masks[track], gt[obj]), (
            f"track {track} is not object {obj} in every frame"
        )
    assert sorted({f for c in calls for f in c}) == list(range(length))
    assert released[-1] == length


def test_one_frame_video_and_video_without_objects():
    gt = _moving_objects(1)
    writer = VideoMaskWriter(1, (16, 24))
    probs = associate_clip_windows(
        1, _oracle_clip_fn(gt), window_size=5, window_stride=2, frame_sink=writer
    )
    masks = writer.track_masks(probs.shape[0])
    assert probs.shape[0] == 2 and masks[0].shape == (1, 16, 24) and masks[0].any()

    def nothing(frames):
        return ClipPrediction(frames, torch.zeros(0, 4), torch.zeros(0, len(frames), 8, 12))

    writer = VideoMaskWriter(9, (8, 12), output_rle=True)
    probs = associate_clip_windows(9, nothing, window_size=4, window_stride=2, frame_sink=writer)
    assert probs.shape == (0, 4) and writer.track_masks(0) == []
    idx, scores, labels = select_track_classes(probs, multi_class=True, class_threshold=0.01)
    assert idx.numel() == scores.numel() == labels.numel() == 0


def _reference_videos(clips, length, max_inst=50, threshold=0.05):
    """Dense restatement of the official IFC `Videos` (all clips, all tracks, all frames stored)."""
    num_c = len(clips)
    h, w = clips[0].mask_logits.shape[-2:]
    k = clips[0].class_probs.shape[1]
    logits = torch.zeros(num_c, max_inst, length, h, w, dtype=torch.float64)
    probs = torch.zeros_like(logits)
    valid = torch.zeros(num_c, max_inst, length, dtype=torch.bool)
    cls = torch.zeros(num_c, max_inst, k, dtype=torch.float64)
    num_inst, seen = 0, set()
    for ci, clip in enumerate(clips):
        fr = clip.frame_indices
        inter_in = [i for i, f in enumerate(fr) if f in seen]
        inter_s = [f for f in fr if f in seen]
        lo = max(ci - len(fr), 0)
        i_m = clip.mask_logits.double().sigmoid()[:, inter_in].flatten(-2)[None, None]
        s_m = probs[lo:ci, :num_inst][:, :, inter_s].flatten(-2).unsqueeze(2)
        s_v = valid[lo:ci, :num_inst][:, :, inter_s][:, :, None, :, None]
        num = (s_m * i_m * s_v).sum(dim=(-1, -2))
        den = ((s_m + i_m - s_m * i_m) * s_v).sum(dim=(-1, -2))
        siou = num / (den + 1e-6)
        nvalid = (s_v.flatten(2).sum(dim=2) > 0).sum(dim=0)
        scores = (
            siou.sum(dim=0) / (nvalid.reshape(-1, 1) + 1e-6)
            if num_inst
            else torch.zeros(0, len(clip.class_probs))
        )
        above = scores > threshold
        rows, cols = linear_sum_assignment((scores * above).numpy(), maximize=True)
        existed = []
        for r, c in zip(rows, cols):
            if above[r, c]:
                logits[ci, r, fr] = clip.mask_logits[c].double()
                probs[ci, r, fr] = clip.mask_logits[c].double().sigmoid()
                valid[ci, r, fr] = True
                cls[ci, r] = clip.class_probs[c].double()
                existed.append(c)
        left = [i for i in range(len(clip.class_probs)) if i not in existed]
        for j, c in enumerate(left):
            logits[ci, num_inst + j, fr] = clip.mask_logits[c].double()
            probs[ci, num_inst + j, fr] = clip.mask_logits[c].double().sigmoid()
            valid[ci, num_inst + j, fr] = True
            cls[ci, num_inst + j] = clip.class_probs[c].double()
        seen.update(fr)
        num_inst += len(left)
    v = valid[:, :num_inst]
    out_logits = logits[:, :num_inst].sum(0) / v.sum(0)[..., None, None]
    out_cls = cls[:, :num_inst].sum(0) / (v.sum(2) > 0).sum(0)[..., None]
    return out_cls, out_logits > 0


def test_association_equals_official_dense_algorithm():
    """Random overlapping instances, window 5 / stride 1 (IFC's near-online setting)."""
    g = torch.Generator().manual_seed(0)
    length, window = 9, 5
    base = torch.randn(4, length, 6, 7, generator=g) * 3  # 4 latent objects
    clips = []
    for start, end in window_spans(length, window, 1):
        present = torch.randperm(4, generator=g)[: 2 + start % 3]
        noise = torch.randn(len(present), end - start, 6, 7, generator=g)
        logits = base[present][:, start:end] + noise
        probs = torch.softmax(torch.randn(len(present), 5, generator=g), -1)
        clips.append(ClipPrediction(list(range(start, end)), probs, logits))
    ref_cls, ref_masks = _reference_videos(clips, length)

    writer = VideoMaskWriter(length, (6, 7))
    it = iter(clips)
    cls = associate_clip_windows(
        length, lambda frames: next(it), window_size=window, window_stride=1, frame_sink=writer
    )
    masks = torch.stack(writer.track_masks(cls.shape[0]))
    assert cls.shape == ref_cls.shape
    assert torch.allclose(cls.double(), ref_cls, atol=1e-6)
    assert torch.equal(masks, ref_masks)


def test_track_cap_keeps_most_confident_instances():
    associator = SoftIoUTrackAssociator(max_num_tracks=2)
    probs = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]])
    assigned = associator.update(ClipPrediction([0], probs, torch.randn(3, 1, 4, 4)))
    assert assigned.tolist() == [-1, 0, 1] and associator.num_tracks == 2


def test_memory_stays_bounded_on_long_video():
    length, window, stride = 60, 6, 3
    gt = _moving_objects(length)
    computed = []
    cache = FrameFeatureCache(
        lambda ids: computed.extend(ids) or {"x": torch.tensor(ids).float()[:, None]}, 4
    )
    oracle = _oracle_clip_fn(gt)
    peak = {"cache": 0}

    def clip_fn(frames):
        feats = cache.get(frames)
        assert feats["x"][:, 0].tolist() == [float(f) for f in frames]
        peak["cache"] = max(peak["cache"], len(cache))
        return oracle(frames)

    associator = SoftIoUTrackAssociator(
        frame_sink=VideoMaskWriter(length, (8, 12), output_rle=True)
    )
    spans = window_spans(length, window, stride)
    max_buffers = 0
    for k, (s, e) in enumerate(spans):
        associator.update(clip_fn(list(range(s, e))))
        max_buffers = max(max_buffers, len(associator._frame_sum))
        nxt = spans[k + 1][0] if k + 1 < len(spans) else length
        associator.finalize_before(nxt)
        cache.release_before(nxt)
        assert len(associator._recent) <= window
    assert max_buffers <= window
    assert peak["cache"] <= window + 4
    assert sorted(computed) == list(range(length))  # every frame computed exactly once
    masks = associator.frame_sink.track_masks(associator.num_tracks)
    assert associator.num_tracks == 2 and len(masks[0]) == length
    decoded = mask_util.decode(masks[0][7]).astype(bool)
    assert decoded.shape == (8, 12) and decoded.any()


def test_writer_bool_and_rle_agree_and_upsample_to_original_size():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    valid = torch.tensor([True, False, True])
    bool_writer, rle_writer = (
        VideoMaskWriter(2, (20, 28)),
        VideoMaskWriter(2, (20, 28), output_rle=True),
    )
    for writer in (bool_writer, rle_writer):
        writer(1, logits, valid)
    as_bool, as_rle = bool_writer.track_masks(3), rle_writer.track_masks(3)
    up = (
        torch.nn.functional.interpolate(
            logits[None], size=(20, 28), mode="bilinear", align_corners=False
        )[0]
        > 0
    )
    assert torch.equal(as_bool[0][1], up[0]) and not as_bool[1].any() and not as_bool[0][0].any()
    assert list(as_rle[1]) == [None, None] and as_rle[0][0] is None
    assert isinstance(as_rle[2][1]["counts"], str)
    assert np.array_equal(mask_util.decode(as_rle[2][1]).astype(bool), up[2].numpy())
    assert torch.equal(decode_track_masks(as_rle[2]), as_bool[2])
    assert as_rle[2].mask_size == (20, 28) and len(rle_writer.track_masks(5)[4]) == 2


def test_rle_frame_store_reads_back_any_frame_and_track():
    """Frames written in any order with any number of tracks; absent tracks and unwritten frames
    read as None; memory holds two numbers per frame, the masks are in the file."""
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(4, 3, 9, 11, generator=g) > 0.6  # [T, n, H, W]
    store = RLEFrameStore(5, (9, 11))
    for frame, num_tracks in [(2, 3), (0, 1), (3, 2), (1, 3)]:
        counts = encode_rle_counts(masks[frame, :num_tracks])
        counts[0] = None if frame == 3 else counts[0]
        store.write_frame(frame, counts)
    expected = {0: 1, 1: 3, 2: 3, 3: 2}
    for frame in range(5):
        for track in range(3):
            rle = store.read(frame, track)
            if frame == 4 or track >= expected.get(frame, 0) or (frame, track) == (3, 0):
                assert rle is None
            else:
                assert rle == encode_rle(masks[frame, track])
    assert store.num_bytes > 0
    with pytest.raises(ValueError, match="already written"):
        store.write_frame(2, [None])
    with pytest.raises(IndexError):
        store.write_frame(5, [None])


def test_select_track_classes():
    probs = torch.tensor([[0.5, 0.3, 0.005, 0.195], [0.001, 0.002, 0.9, 0.097]])
    idx, scores, labels = select_track_classes(probs, multi_class=True, class_threshold=0.01)
    assert idx.tolist() == [0, 0, 1] and labels.tolist() == [0, 1, 2]
    assert torch.allclose(scores, torch.tensor([0.5, 0.3, 0.9]))
    idx, scores, labels = select_track_classes(probs, multi_class=False, class_threshold=0.01)
    assert idx.tolist() == [0, 1] and labels.tolist() == [0, 2]
