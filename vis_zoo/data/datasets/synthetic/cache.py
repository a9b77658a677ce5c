"""Where the registered synthetic splits live, and generating one on first use.

The cache root is `set_synthetic_root(path)` (cfg.DATASETS.SYNTHETIC_ROOT), else
$VIS_ZOO_CACHE/synthetic, else ~/.cache/vis_zoo/synthetic; a split is ROOT/<version>/<split>/.
"""

import logging
import os
from typing import Any, Dict, Optional

from .files import (
    ANNOTATION_FILE,
    GENERATOR_VERSION,
    generate_synthetic_images,
    generate_synthetic_vis,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SYNTHETIC_IMAGE_SPLITS",
    "SYNTHETIC_SPLITS",
    "ensure_synthetic_split",
    "get_synthetic_root",
    "set_synthetic_root",
]

# Default contents of each registered split. `seed` differs per split so that val is not train.
SYNTHETIC_SPLITS: Dict[str, Dict[str, Any]] = {
    "train": dict(num_videos=60, min_length=5, max_length=30, seed=0, mask_format="rle"),
    "val": dict(num_videos=20, min_length=5, max_length=30, seed=1, mask_format="compressed_rle"),
    "long": dict(num_videos=4, min_length=100, max_length=150, seed=2, mask_format="rle"),
}
SYNTHETIC_IMAGE_SPLITS: Dict[str, Dict[str, Any]] = {
    "img_train": dict(num_images=100, seed=3, mask_format="polygon"),
}

_ROOT_OVERRIDE: Optional[str] = None


def set_synthetic_root(path: Optional[str]) -> None:
    """Use `path` as the synthetic cache root (cfg.DATASETS.SYNTHETIC_ROOT); "" or None resets
    it."""
    global _ROOT_OVERRIDE
    _ROOT_OVERRIDE = os.path.abspath(os.path.expanduser(path)) if path else None


def get_synthetic_root() -> str:
    """Cache root: `set_synthetic_root` value, else $VIS_ZOO_CACHE/synthetic, else
    ~/.cache/vis_zoo/synthetic.

    Read on every call, so changing $VIS_ZOO_CACHE (as the test fixture does) takes effect at once.
    """
    if _ROOT_OVERRIDE:
        return _ROOT_OVERRIDE
    cache = os.environ.get("VIS_ZOO_CACHE")
    if cache:
        return os.path.join(os.path.abspath(os.path.expanduser(cache)), "synthetic")
    return os.path.join(os.path.expanduser("~"), ".cache", "vis_zoo", "synthetic")


def _split_dir(split: str, root: Optional[str] = None) -> str:
    return os.path.join(root or get_synthetic_root(), GENERATOR_VERSION, split)


# ----------------------------------------------------------------------------------------------


def ensure_synthetic_split(split: str, root: Optional[str] = None) -> str:
    """Generate the registered split into the cache unless it is there; return its directory.

    `split` is one of SYNTHETIC_SPLITS ("train", "val", "long") or "img_train". Safe when several
    processes race (each builds in a temp dir; the first rename wins).
    """
    out_dir = _split_dir(split, root)
    if os.path.isfile(os.path.join(out_dir, ANNOTATION_FILE)):
        return out_dir
    logger.info("Generating synthetic split '%s' into %s", split, out_dir)
    try:
        if split in SYNTHETIC_SPLITS:
            generate_synthetic_vis(out_dir, **SYNTHETIC_SPLITS[split])
        elif split in SYNTHETIC_IMAGE_SPLITS:
            generate_synthetic_images(out_dir, **SYNTHETIC_IMAGE_SPLITS[split])
        else:
            raise KeyError(
                f"unknown synthetic split {split!r}; known: "
                f"{sorted(SYNTHETIC_SPLITS) + sorted(SYNTHETIC_IMAGE_SPLITS)}"
            )
    except FileExistsError:
        pass  # finished by another process between our check and our build
    return out_dir
