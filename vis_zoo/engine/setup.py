"""The one `setup()` shared by every tool: config from file + overrides, logging, output folder."""

import argparse

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_argument_parser

from vis_zoo.config import get_vis_cfg, method_config

from .checks import check_dataset_names, resolve_num_classes
from .cli import add_config_arguments, config_overrides
from .run_logging import start_run


def build_argument_parser(epilog: str = None) -> argparse.ArgumentParser:
    """detectron2's parser (--config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url, trailing `KEY VALUE` overrides) with the arguments every VIS Zoo
    tool shares (`vis_zoo.engine.cli`: --train-data, --test-data, --opts)."""
    parser = default_argument_parser(epilog=epilog)
    return add_config_arguments(parser, config_file=False, trailing_overrides=False)


def selected_meta_architecture(config_file: str = "", opts=None) -> str:
    """MODEL.META_ARCHITECTURE as the config will have it: the last of detectron2's default, the
    file (with its _BASE_ chain) and a `MODEL.META_ARCHITECTURE X` pair in the overrides."""
    selected = get_cfg().MODEL.META_ARCHITECTURE
    if config_file:
        loaded = CfgNode.load_yaml_with_base(config_file, allow_unsafe=True)
        selected = (loaded.get("MODEL") or {}).get("META_ARCHITECTURE", selected)
    opts = list(opts or [])
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "MODEL.META_ARCHITECTURE":
            selected = value
    return str(selected)


def build_config(config_file: str = "", opts=None):
    """The full config of one run: shared keys + the selected method's keys, merged with a file and
    `KEY VALUE` overrides, then validated.

    The method is read from MODEL.META_ARCHITECTURE (file, then overrides) before merging, so only
    its package is imported and only its keys exist (`vis_zoo.config.get_vis_cfg`). Another
    meta-architecture (a test model, detectron2's own) gets the shared keys only; a method key in
    its config is a KeyError that names the meta-architecture and the known methods.
    """
    opts = list(opts or [])
    meta_architecture = selected_meta_architecture(config_file, opts)
    cfg = get_vis_cfg(meta_architecture)
    try:
        if config_file:
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(opts)
    except KeyError as error:
        if method_config(meta_architecture) is not None:
            raise
        # keys of a method the config does not select: most likely a misspelt META_ARCHITECTURE
        import vis_zoo_projects

        raise KeyError(
            f"{error.args[0] if error.args else error} -- MODEL.META_ARCHITECTURE "
            f"{meta_architecture!r} "
            f"is not a VIS Zoo method ({', '.join(sorted(vis_zoo_projects.METHOD_PACKAGES))}), so "
            "the config has no method keys"
        ) from error
    validate_config(cfg)
    if cfg.DATASETS.SYNTHETIC_ROOT:
        # The synthetic datasets are registered at import time; point them at the configured root.
        from vis_zoo.data.datasets import set_synthetic_root

        set_synthetic_root(cfg.DATASETS.SYNTHETIC_ROOT)
    # Datasets named by DATASETS.YTVIS_FORMAT, then the start-up checks that need them registered.
    from vis_zoo.data.datasets.from_config import register_config_datasets

    register_config_datasets(cfg)
    check_dataset_names(cfg)
    resolve_num_classes(cfg)
    return cfg


def validate_config(cfg) -> None:
    """Reject settings that cannot work, with a message naming the key."""
    if cfg.SOLVER.AMP.ENABLED and not str(cfg.MODEL.DEVICE).startswith("cuda"):
        raise ValueError(
            "SOLVER.AMP.ENABLED=True needs MODEL.DEVICE=cuda (mixed precision here is CUDA-only); "
            f"got MODEL.DEVICE={cfg.MODEL.DEVICE!r}"
        )
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"MODEL.DEVICE={cfg.MODEL.DEVICE!r} but CUDA is not available; use MODEL.DEVICE cpu"
        )
    ratio = list(cfg.DATASETS.DATASET_RATIO)
    if ratio and len(ratio) != len(cfg.DATASETS.TRAIN):
        raise ValueError(
            f"DATASETS.DATASET_RATIO has {len(ratio)} entries but DATASETS.TRAIN has "
            f"{len(cfg.DATASETS.TRAIN)} ({list(cfg.DATASETS.TRAIN)})"
        )
    if cfg.SOLVER.OPTIMIZER.upper() not in ("ADAMW", "SGD"):
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")


def setup(args):
    """Build, freeze and log the config for a tool run from `build_argument_parser()` args: the full
    details go to OUTPUT_DIR/log.txt, a summary to the terminal (`vis_zoo.engine.run_logging`)."""
    cfg = build_config(args.config_file, config_overrides(args))
    cfg.freeze()
    start_run(cfg, args)
    return cfg
