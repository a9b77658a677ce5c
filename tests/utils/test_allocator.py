"""Freed heap memory is given back during long-video inference, so the resident memory does not
drift upwards with the number of chunks or windows (`vis_zoo.utils.allocator`)."""

import ctypes
import ctypes.util
import os
import sys
import time

import pytest
import torch

import vis_zoo.utils.allocator as allocator
from vis_zoo.modeling import ClipPrediction, associate_clip_windows
from vis_zoo.modeling.mask2former.video_inference import render_video_masks
from vis_zoo.utils.allocator import FreedMemoryTrimmer, release_freed_memory

GLIBC = sys.platform.startswith("linux") and allocator._malloc_trim() is not False


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not GLIBC, reason="needs glibc's malloc")
def test_release_gives_back_free_pages_inside_the_heap():
    """80 MB of 64 kB heap blocks freed around every 16th one, which stays: the holes are resident
    until trimmed (what a video's freed per-chunk temporaries leave), and released by the trim."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 * 1024, 1280  # under glibc's smallest mmap threshold (128 kB): in the heap
    blocks = [libc.malloc(size) for _ in range(count)]
    for block in blocks:
        ctypes.memset(block, 1, size)  # make every page resident
    for i, block in enumerate(blocks):
        if i % 16:
            libc.free(block)
    before = _rss_mb()
    release_freed_memory()
    after = _rss_mb()
    for block in blocks[::16]:
        libc.free(block)
    assert before - after > 40, f"resident {before:.0f} MB before the trim, {after:.0f} MB after"


def test_trimmer_rate(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: calls.append(1))
    every = FreedMemoryTrimmer(min_interval_s=0)
    for _ in range(5):
        every.step()
    assert every.num_trims == 5 and len(calls) == 5
    rare = FreedMemoryTrimmer(min_interval_s=3600)
    for _ in range(5):
        rare.step()
    assert rare.num_trims == 1  # the first step trims, the next ones are too soon


def test_trimmer_counts_cpu_time_not_wall_clock_time(monkeypatch):
    """Time the process spends waiting (here asleep; on a loaded machine, for a core) does not
    count: the trims follow the work done, so a slowed run trims as often per chunk."""
    calls = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: calls.append(1))
    trimmer = FreedMemoryTrimmer(min_interval_s=0.5)
    trimmer.step()
    time.sleep(0.8)
    trimmer.step()
    assert trimmer.num_trims == 1
    cpu_start = time.process_time()
    while time.process_time() - cpu_start < 0.6:  # busy: CPU time passes
        pass
    trimmer.step()
    assert trimmer.num_trims == 2 and len(calls) == 2


@pytest.fixture
def trims(monkeypatch):
    """Every step of every trimmer trims; counts the trims."""
    calls = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(FreedMemoryTrimmer.__init__, "__defaults__", (0.0,))
    return calls


def test_window_association_trims_after_every_window(trims):
    def clip_fn(frames):
        return ClipPrediction(frames, torch.full((1, 3), 1 / 3), torch.zeros(1, len(frames), 4, 4))

    associate_clip_windows(40, clip_fn, window_size=10, window_stride=5)
    assert len(trims) == 7  # windows starting at 0, 5, ..., 30


def test_mask_rendering_trims_after_every_step(trims):
    render_video_masks(
        torch.randn(2, 4),
        torch.randn(6, 4, 3, 5),
        padded_hw=(12, 20),
        image_hw=(12, 20),
        output_hw=(12, 20),
        frames_per_step=2,
        output_rle=True,
        device=torch.device("cpu"),
    )
    assert len(trims) == 3


def test_window_spans_are_made_one_at_a_time():
    """Window association keeps no list of the windows (with stride 1, a tuple per frame)."""
    import types

    from vis_zoo.modeling.clip_association import iter_window_spans, window_spans

    spans = iter_window_spans(108_000, 5, 1)
    assert isinstance(spans, types.GeneratorType)
    for length, size, stride in [(40, 36, 18), (7, 5, 1), (3, 36, 18), (10, 4, 4)]:
        assert list(iter_window_spans(length, size, stride)) == window_spans(length, size, stride)
    with pytest.raises(ValueError):
        next(iter_window_spans(10, 4, 5))
