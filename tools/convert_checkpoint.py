#!/usr/bin/env python
"""Convert an official checkpoint of a method into a VIS Zoo (detectron2-format) checkpoint.

    python tools/convert_checkpoint.py --method ifc IFC_R50.pth converted.pth
    python tools/convert_checkpoint.py --method ifc --config-file configs/ifc/ytvis19_R101.yaml IN
    OUT

Each method package ``vis_zoo_projects.<method>`` exposes
``convert_official_state_dict(official_state_dict, reference_state_dict) -> state_dict``, which
renames every official tensor to ours and fails (ValueError) listing unused official tensors, our
tensors left missing and shape mismatches. The reference is our model built from the config (default
``configs/<method>/ytvis19_R50.yaml``), so the converted file loads with every tensor used and
checked. Trailing ``KEY VALUE`` pairs override the config (e.g. ``MODEL.IFC.NUM_CLASSES 25``).
"""

import argparse
import importlib
import logging
import os
import sys

import torch

from vis_zoo.utils.io import atomic_open

logger = logging.getLogger("vis_zoo.convert_checkpoint")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_official(path: str) -> dict:
    """The official state_dict: a checkpoint dict with "model" (or "state_dict"), or a bare
    state_dict."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch without `weights_only`
        ckpt = torch.load(path, map_location="cpu")
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    for key in ("model", "state_dict"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    return ckpt


def reference_state_dict(method: str, config_file: str, opts) -> dict:
    """Our model's state_dict (CPU) for the given config: the names and shapes to convert to."""
    from detectron2.modeling import build_model

    from vis_zoo.engine.setup import build_config

    cfg = build_config(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
    return build_model(cfg).state_dict()


def convert(method: str, in_path: str, out_path: str, config_file: str = "", opts=()) -> dict:
    """Convert `in_path` to `out_path`; returns the converted state_dict."""
    try:
        module = importlib.import_module(f"vis_zoo_projects.{method}")
    except ImportError as e:
        raise ValueError(
            f"unknown method {method!r} (no package vis_zoo_projects.{method}): {e}"
        ) from e
    if not hasattr(module, "convert_official_state_dict"):
        raise ValueError(f"vis_zoo_projects.{method} has no convert_official_state_dict")
    config_file = config_file or os.path.join(REPO_ROOT, "configs", method, "ytvis19_R50.yaml")
    official = load_official(in_path)
    reference = reference_state_dict(method, config_file, opts)
    converted = module.convert_official_state_dict(official, reference)
    with atomic_open(out_path, "wb") as f:
        torch.save(
            {
                "model": converted,
                "__author__": f"vis_zoo convert_checkpoint ({method})",
                "matching_heuristics": False,
            },
            f,
        )
    logger.info("converted %d tensors of %s -> %s", len(converted), in_path, out_path)
    return converted


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", required=True, help="method package name, e.g. ifc")
    parser.add_argument(
        "--config-file", default="", help="our config (default configs/<method>/ytvis19_R50.yaml)"
    )
    parser.add_argument("input", help="official checkpoint (.pth)")
    parser.add_argument("output", help="converted checkpoint (.pth, detectron2 format)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        converted = convert(args.method, args.input, args.output, args.config_file, args.opts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(converted)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
