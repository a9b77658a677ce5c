"""Shared Mask2Former video inference: detector pass sizes and mask rendering."""

import pytest
import torch
import torch.nn.functional as F

from vis_zoo.modeling.mask2former.video_inference import (
    frames_per_detector_pass,
    render_video_masks,
)
from vis_zoo.modeling.postprocessing import decode_track_masks


def test_frames_per_detector_pass():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    budget = 2 * 360 * 640
    assert frames_per_detector_pass((360, 640), cpu, 18, budget) == 2
    assert frames_per_detector_pass((720, 1280), cpu, 18, budget) == 1  # never fewer than one frame
    assert frames_per_detector_pass((96, 128), cpu, 18, budget) == 18  # never more than the chunk
    assert (
        frames_per_detector_pass((360, 640), cuda, 18, budget) == 18
    )  # the pixel budget is CPU-only
    with pytest.raises(ValueError, match=">= 1"):
        frames_per_detector_pass((360, 640), cpu, 0, budget)


def test_render_masks_per_frame_or_shared_embeddings_and_steps():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 8, 6, 10, generator=g)  # [T, C, h4, w4]
    shared = torch.randn(3, 8, generator=g)
    kwargs = dict(
        padded_hw=(24, 40),
        image_hw=(22, 37),
        output_hw=(22, 37),
        output_rle=False,
        device=torch.device("cpu"),
    )
    masks_1, scores_1 = render_video_masks(shared, feats, frames_per_step=1, **kwargs)
    masks_5, scores_5 = render_video_masks(
        shared.expand(5, 3, 8), feats, frames_per_step=5, **kwargs
    )
    torch.testing.assert_close(scores_1, scores_5)
    for a, b in zip(masks_1, masks_5):
        assert a.shape == (5, 22, 37) and torch.equal(a, b)
    # reference: logits at /4 -> padded size -> crop; same output size, so no further resize
    logits = torch.einsum("kc,tchw->kthw", shared, feats)
    up = F.interpolate(logits, size=(24, 40), mode="bilinear", align_corners=False)[..., :22, :37]
    for q in range(3):
        assert torch.equal(masks_1[q], up[q] > 0)
        hard = up[q] > 0
        expected = (up[q].sigmoid() * hard).sum() / (hard.sum() + 1e-6)
        torch.testing.assert_close(scores_1[q], expected)
    # another output size: resized from the cropped logits
    other, _ = render_video_masks(
        shared, feats, frames_per_step=2, **{**kwargs, "output_hw": (44, 74)}
    )
    ref = F.interpolate(up, size=(44, 74), mode="bilinear", align_corners=False) > 0
    assert all(torch.equal(m, r) for m, r in zip(other, ref))
    with pytest.raises(ValueError, match="frames of embeddings"):
        render_video_masks(torch.randn(4, 3, 8), feats, frames_per_step=2, **kwargs)


def test_top_query_class_pairs_and_pass_settings():
    from vis_zoo.modeling.mask2former.video_inference import (
        check_detector_pass_settings,
        top_query_class_pairs,
    )

    logits = torch.log(
        torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    )  # 2 queries, 2 classes + no object
    scores, labels, queries = top_query_class_pairs(logits, 3)
    torch.testing.assert_close(scores, torch.tensor([0.6, 0.5, 0.3]))
    assert labels.tolist() == [1, 0, 1] and queries.tolist() == [1, 0, 0]
    assert len(top_query_class_pairs(logits, 10)[0]) == 4  # at most Q * K pairs
    check_detector_pass_settings(18, 460800, "auto")
    for store in ("device", "cpu", "disk", "recompute"):
        check_detector_pass_settings(18, 460800, store)
    with pytest.raises(ValueError, match="TEST_FEATURE_STORE must be one of auto/device/cpu/disk"):
        check_detector_pass_settings(18, 460800, "ram")
    with pytest.raises(
        ValueError, match="MODEL.VIS.TEST_CHUNK_SIZE and MODEL.VIS.TEST_CHUNK_PIXELS_CPU"
    ):
        check_detector_pass_settings(0, 460800, "auto")


def test_auto_feature_store_keeps_a_bounded_amount_in_memory(monkeypatch, tmp_path):
    import shutil

    from vis_zoo.modeling.mask2former import video_inference
    from vis_zoo.modeling.mask2former.video_inference import feature_store_kind

    free = {"bytes": 0}
    asked = []

    def disk_usage(path):
        asked.append(path)
        return shutil._ntuple_diskusage(10 * free["bytes"], 9 * free["bytes"], free["bytes"])

    monkeypatch.setattr(video_inference.shutil, "disk_usage", disk_usage)
    file_system = {"type": "ext4"}
    monkeypatch.setattr(video_inference, "folder_file_system", lambda path: file_system["type"])
    cpu, cuda, frame_mb = torch.device("cpu"), torch.device("cuda"), 2**20
    # one official window on the device, then memory up to the budget
    assert feature_store_kind("auto", cpu, 36, 100 * frame_mb, 1024) == "device"
    assert feature_store_kind("auto", cpu, 37, 10 * frame_mb, 1024) == "cpu"
    assert asked == []
    # beyond the budget on CPU: a file while it takes at most half the free space, else recomputed
    free["bytes"] = 2 * 1030 * frame_mb
    assert feature_store_kind("auto", cpu, 103, 10 * frame_mb, 1024, str(tmp_path)) == "disk"
    assert asked == [str(tmp_path)]
    assert feature_store_kind("auto", cpu, 104, 10 * frame_mb, 1024, str(tmp_path)) == "recompute"
    free["bytes"] = 10**15
    assert feature_store_kind("auto", cpu, 200, 10 * frame_mb, 1024) == "disk"
    assert asked[-1] == video_inference.tempfile.gettempdir()
    # a folder in memory (tmpfs) would make the file resident memory again
    file_system["type"] = "tmpfs"
    assert feature_store_kind("auto", cpu, 200, 10 * frame_mb, 1024) == "recompute"
    file_system["type"] = None  # mount table unreadable: the free space decides
    assert feature_store_kind("auto", cpu, 200, 10 * frame_mb, 1024) == "disk"
    # on a GPU the second detector pass is the choice beyond the budget, whatever the disk
    assert feature_store_kind("auto", cuda, 200, 10 * frame_mb, 1024) == "recompute"
    assert feature_store_kind("disk", cpu, 5, frame_mb, 1024) == "disk"
    assert feature_store_kind("recompute", cpu, 5, frame_mb, 1024) == "recompute"


def test_folder_file_system_reads_the_longest_mount_point_above_the_folder(tmp_path):
    from vis_zoo.modeling.mask2former.video_inference import folder_file_system

    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
        "/dev/vdb /tmp/big\\040disk xfs rw 0 0\n"
        "tmpfs /tmpfiles tmpfs rw 0 0\n"
    )
    assert folder_file_system("/tmp", str(mounts)) == "tmpfs"
    assert folder_file_system("/tmp/features", str(mounts)) == "tmpfs"
    assert folder_file_system("/tmp/big disk/features", str(mounts)) == "xfs"
    assert folder_file_system("/tmpx", str(mounts)) == "ext4"  # not under /tmp
    assert folder_file_system("/home/user", str(mounts)) == "ext4"
    assert folder_file_system("/home", str(tmp_path / "missing")) is None


def test_feature_stores_give_back_what_was_added():
    """Memory, disk and recomputed stores return the same features for any range of frames; the
    recomputed one computes on the detector's own chunks (the first pass's values exactly)."""
    from vis_zoo.modeling.mask2former.video_inference import (
        DiskFeatureStore,
        MemoryFeatureStore,
        RecomputedFeatureStore,
    )

    g = torch.Generator().manual_seed(0)
    features = torch.randn(7, 4, 3, 5, generator=g)
    computed = []

    def compute(start, end):
        computed.append((start, end))
        return features[start:end].clone()

    memory, disk = MemoryFeatureStore(7, torch.device("cpu")), DiskFeatureStore(7)
    recomputed = RecomputedFeatureStore(7, 3, compute)
    for start in range(0, 7, 3):  # the detector's chunks of 3 frames
        for store in (memory, disk, recomputed):
            store.add(start, features[start : start + 3])
    for start, end in [(0, 7), (2, 5), (6, 7), (4, 6)]:
        for store in (memory, disk, recomputed):
            assert torch.equal(store.read(start, end), features[start:end])
    assert set(computed) <= {(0, 3), (3, 6), (6, 7)}
    disk.close()


def test_render_from_a_store_equals_render_from_the_tensor():
    from vis_zoo.modeling.mask2former.video_inference import DiskFeatureStore

    g = torch.Generator().manual_seed(3)
    feats = torch.randn(5, 8, 6, 10, generator=g)
    embed = torch.randn(3, 8, generator=g)
    kwargs = dict(
        padded_hw=(24, 40),
        image_hw=(22, 37),
        output_hw=(30, 50),
        frames_per_step=2,
        device=torch.device("cpu"),
    )
    dense, dense_scores = render_video_masks(embed, feats, output_rle=False, **kwargs)
    store = DiskFeatureStore(5)
    store.add(0, feats)
    rle, rle_scores = render_video_masks(embed, store, output_rle=True, **kwargs)
    torch.testing.assert_close(rle_scores, dense_scores, rtol=0, atol=0)
    for masks, track in zip(dense, rle):
        assert len(track) == 5 and torch.equal(decode_track_masks(track), masks)
