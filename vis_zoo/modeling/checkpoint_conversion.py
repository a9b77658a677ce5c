"""Shared core of the official-checkpoint converters: rename every tensor, check every shape.

Each method supplies only its key map (`map_key(official_name) -> our name or None`); this routine
applies it and refuses to return a partial result: unmapped official tensors, our tensors left
without a value, and shape mismatches are all listed in one ValueError.
"""

from collections import OrderedDict
from typing import Callable, List, Mapping, Optional

import torch


def _listing(items: List[str], limit: int = 20, sep: str = ", ") -> str:
    return sep.join(items[:limit]) + (" ..." if len(items) > limit else "")


def convert_with_key_map(
    official: Mapping[str, torch.Tensor],
    map_key: Callable[[str], Optional[str]],
    reference: Optional[Mapping[str, torch.Tensor]],
    method: str,
    *,
    may_skip_on_shape_mismatch: Callable[[str], bool] = lambda ours: False,
    ignore: Callable[[str], bool] = lambda key: False,
) -> "OrderedDict[str, torch.Tensor]":
    """Rename `official` (a state_dict, or a checkpoint with a "model" key) to our names.

    Args:
        map_key: official name -> our name, or None for a tensor we have no place for.
        reference: our model's state_dict; None checks only that every official key is mapped.
        method: name used in the error message.
        may_skip_on_shape_mismatch: our names that may be dropped (left to the model's own init)
            when shapes differ, e.g. class heads when starting from COCO weights.
        ignore: official names dropped silently (e.g. BatchNorm's num_batches_tracked counters for a
            model whose backbone uses FrozenBN, which has none).
    Raises:
        ValueError listing unused official tensors, our tensors left missing, and shape mismatches.
    """
    if "model" in official and isinstance(official["model"], Mapping):
        official = official["model"]
    converted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    unused, mismatched, excused = [], [], set()
    for key, value in official.items():
        if ignore(key):
            continue
        ours = map_key(key)
        if ours is None:
            unused.append(key)
            continue
        if ours in converted:
            unused.append(f"{key} (duplicate of {ours})")
            continue
        value = torch.as_tensor(value)
        if reference is not None:
            if ours not in reference:
                unused.append(f"{key} (-> {ours}, not in our model)")
                continue
            if tuple(reference[ours].shape) != tuple(value.shape):
                excused.add(ours)  # reported as a mismatch (or skipped), not again as missing
                if not may_skip_on_shape_mismatch(ours):
                    mismatched.append(
                        f"{key} -> {ours}: official {tuple(value.shape)}, ours "
                        f"{tuple(reference[ours].shape)}"
                    )
                continue
        converted[ours] = value
    missing = sorted(set(reference) - set(converted) - excused) if reference is not None else []
    if unused or missing or mismatched:
        lines = [f"{method} checkpoint conversion failed:"]
        if unused:
            lines.append(f"  {len(unused)} official tensors not used: {_listing(unused)}")
        if missing:
            lines.append(f"  {len(missing)} of our tensors missing: {_listing(missing)}")
        if mismatched:
            lines.append(f"  {len(mismatched)} shape mismatches: {_listing(mismatched, sep='; ')}")
        raise ValueError("\n".join(lines))
    return converted
