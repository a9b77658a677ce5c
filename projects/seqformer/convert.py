"""Official SeqFormer checkpoint (wjf5203/SeqFormer, `checkpoint["model"]`) -> our state_dict.

Key map (official -> ours):
    detr.backbone.0.body.conv1 / bn1                  -> backbone.stem.conv1 / .norm
    detr.backbone.0.body.layer{i}.{j}.conv{k} / bn{k} -> backbone.res{i+1}.{j}.conv{k} / .norm
    detr.backbone.0.body.layer{i}.{j}.downsample.0/1  -> backbone.res{i+1}.{j}.shortcut / .norm
    detr.input_proj / detr.transformer / detr.query_embed -> same names without "detr."
    detr.class_embed.{l}   (42 rows indexed by YouTube-VIS id) -> class_embed.{l} (rows
    `class_rows`)
    detr.bbox_embed.{l}    duplicates of detr.transformer.decoder.bbox_embed.{l} (checked equal)
    controller / mask_head -> same names
Every official tensor is used (or checked as a duplicate) and every shape is checked.
"""

import re
from collections import OrderedDict
from typing import Mapping, Optional, Sequence

import torch

from vis_zoo.modeling.checkpoint_conversion import convert_with_key_map

__all__ = ["map_official_key", "convert_official_state_dict"]

_BACKBONE = "detr.backbone.0.body."


def map_official_key(key: str) -> Optional[str]:
    """Our name for an official key; None for keys we do not take (duplicates, unknown)."""
    if key.startswith(_BACKBONE):
        k = key[len(_BACKBONE) :]
        m = re.match(r"^(conv1|bn1)\.(.+)$", k)
        if m:
            return "backbone.stem.conv1." + ("" if m.group(1) == "conv1" else "norm.") + m.group(2)
        m = re.match(r"^layer(\d)\.(\d+)\.(.+)$", k)
        if not m:
            return None
        stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
        prefix = f"backbone.res{stage}.{block}."
        m2 = re.match(r"^conv(\d)\.(.+)$", rest)
        if m2:
            return f"{prefix}conv{m2.group(1)}.{m2.group(2)}"
        m2 = re.match(r"^bn(\d)\.(.+)$", rest)
        if m2:
            return f"{prefix}conv{m2.group(1)}.norm.{m2.group(2)}"
        m2 = re.match(r"^downsample\.([01])\.(.+)$", rest)
        if m2:
            return prefix + ("shortcut." if m2.group(1) == "0" else "shortcut.norm.") + m2.group(2)
        return None
    if key.startswith("detr.bbox_embed."):
        return None  # the same tensors as detr.transformer.decoder.bbox_embed (checked separately)
    for head in ("detr.input_proj.", "detr.transformer.", "detr.query_embed.", "detr.class_embed."):
        if key.startswith(head):
            return key[len("detr.") :]
    for head in ("controller.", "mask_head."):
        if key.startswith(head):
            return key
    return None


def convert_official_state_dict(
    official: Mapping[str, torch.Tensor],
    reference: Optional[Mapping[str, torch.Tensor]] = None,
    class_rows: Optional[Sequence[int]] = None,
) -> "OrderedDict[str, torch.Tensor]":
    """Rename an official SeqFormer state_dict to ours.

    Args:
        official: the official `checkpoint["model"]` (a whole checkpoint with a "model" key is
        accepted).
        reference: our model's state_dict; when given the result must have exactly its keys and
        shapes.
        class_rows: official class-logit row of each of our contiguous classes. Default: all rows
            when our head has as many, else rows 1..K (YouTube-VIS ids 1..40 -> contiguous 0..39).
    Raises:
        ValueError listing unmapped official keys, duplicates that differ, our keys left missing and
        shape mismatches.
    """
    if "model" in official and isinstance(official["model"], Mapping):
        official = official["model"]
    # SeqFormer-specific preparation; the renaming and checks are the shared routine's.
    prepared: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    bad_dupes = []
    for key, value in official.items():
        value = torch.as_tensor(value)
        if key.startswith("detr.bbox_embed."):
            # The official model stores each box head twice; the copies must agree, one is kept.
            twin = "detr.transformer.decoder.bbox_embed." + key[len("detr.bbox_embed.") :]
            if twin not in official or not torch.equal(torch.as_tensor(official[twin]), value):
                bad_dupes.append(key)
            continue
        ours = map_official_key(key)
        if (
            ours is not None
            and ours.startswith("class_embed.")
            and reference is not None
            and ours in reference
        ):
            # Keep the official class-logit rows of our contiguous classes.
            num_ours = reference[ours].shape[0]
            rows = (
                list(class_rows)
                if class_rows is not None
                else (
                    list(range(value.shape[0]))
                    if num_ours == value.shape[0]
                    else list(range(1, num_ours + 1))
                )
            )
            if len(rows) != num_ours or max(rows) >= value.shape[0]:
                raise ValueError(
                    f"SeqFormer checkpoint conversion failed: {key}: cannot take rows "
                    f"{rows[:3]}... of {tuple(value.shape)} for {num_ours} classes"
                )
            value = value[rows]
        prepared[key] = value
    if bad_dupes:
        raise ValueError(
            "SeqFormer checkpoint conversion failed: detr.bbox_embed keys that do not "
            f"equal the decoder's copy: {bad_dupes[:10]}"
        )
    return convert_with_key_map(prepared, map_official_key, reference, "SeqFormer")
