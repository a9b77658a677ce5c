"""Fixtures shared by every test directory."""

import os

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Cache root holding the registered synthetic datasets, generated once per test session.

    Sets $VIS_ZOO_CACHE to a fresh temp dir (restored afterwards), so `synthetic_vis_train`,
    `synthetic_vis_val`, `synthetic_vis_long` and `synthetic_img_train` load from there; train and
    val
    are generated up front (~2 s), long and img_train on first use (~1 s each). Subprocesses inherit
    the variable; passing the returned path as cfg.DATASETS.SYNTHETIC_ROOT points at the same data.
    """
    from vis_zoo.data.datasets import ensure_synthetic_split, get_synthetic_root, set_synthetic_root

    cache = str(tmp_path_factory.mktemp("vis_zoo_cache"))
    previous = os.environ.get("VIS_ZOO_CACHE")
    os.environ["VIS_ZOO_CACHE"] = cache
    set_synthetic_root(None)  # an override left by an earlier test would shadow the env variable
    try:
        for split in ("train", "val"):
            ensure_synthetic_split(split)
        yield get_synthetic_root()
    finally:
        if previous is None:
            os.environ.pop("VIS_ZOO_CACHE", None)
        else:
            os.environ["VIS_ZOO_CACHE"] = previous
