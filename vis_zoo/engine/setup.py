"""The one `setup()` shared by every tool: config from file + overrides, logging, output folder."""
import argparse

import torch
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from vis_zoo.config import get_vis_cfg


def build_argument_parser(epilog: str = None) -> argparse.ArgumentParser:
    """detectron2's parser: --config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url and trailing `KEY VALUE` config overrides."""
    return default_argument_parser(epilog=epilog)


def build_config(config_file: str = "", opts=None):
    """Full VIS Zoo config (shared + every method's keys), merged with a file and overrides."""
    cfg = get_vis_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts or []))
    validate_config(cfg)
    if cfg.DATASETS.SYNTHETIC_ROOT:
        # The synthetic datasets are registered at import time; point them at the configured root.
        from vis_zoo.data.datasets import set_synthetic_root

        set_synthetic_root(cfg.DATASETS.SYNTHETIC_ROOT)
    return cfg


def validate_config(cfg) -> None:
    """Reject settings that cannot work, with a message naming the key."""
    if cfg.SOLVER.AMP.ENABLED and not str(cfg.MODEL.DEVICE).startswith("cuda"):
        raise ValueError(
            "SOLVER.AMP.ENABLED=True needs MODEL.DEVICE=cuda (mixed precision here is CUDA-only); "
            f"got MODEL.DEVICE={cfg.MODEL.DEVICE!r}"
        )
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE={cfg.MODEL.DEVICE!r} but CUDA is not available; use MODEL.DEVICE cpu")
    ratio = list(cfg.DATASETS.DATASET_RATIO)
    if ratio and len(ratio) != len(cfg.DATASETS.TRAIN):
        raise ValueError(
            f"DATASETS.DATASET_RATIO has {len(ratio)} entries but DATASETS.TRAIN has "
            f"{len(cfg.DATASETS.TRAIN)} ({list(cfg.DATASETS.TRAIN)})"
        )
    if cfg.SOLVER.OPTIMIZER.upper() not in ("ADAMW", "SGD"):
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")


def setup(args):
    """Build, freeze and log the config for a tool run from `build_argument_parser()` args."""
    cfg = build_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup sends only detectron2's and fvcore's loggers to OUTPUT_DIR/log.txt; add ours
    for name in ("vis_zoo", "vis_zoo_projects"):
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name, abbrev_name=name)
    return cfg
