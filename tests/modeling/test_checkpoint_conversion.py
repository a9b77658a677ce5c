import pytest
import torch

from vis_zoo.modeling.checkpoint_conversion import convert_with_key_map

REFERENCE = {"a.weight": torch.zeros(2, 3), "head.weight": torch.zeros(5, 3)}


def _map(key):
    return {"off.a.weight": "a.weight", "off.head.weight": "head.weight"}.get(key)


def test_renames_every_tensor_and_accepts_a_whole_checkpoint():
    official = {"model": {"off.a.weight": torch.ones(2, 3), "off.head.weight": torch.ones(5, 3)}}
    out = convert_with_key_map(official, _map, REFERENCE, "Toy")
    assert list(out) == ["a.weight", "head.weight"] and torch.equal(
        out["a.weight"], torch.ones(2, 3)
    )


def test_lists_unused_missing_and_mismatched_in_one_error():
    official = {"off.a.weight": torch.ones(4, 3), "off.extra": torch.ones(1)}
    with pytest.raises(ValueError) as err:
        convert_with_key_map(official, _map, REFERENCE, "Toy")
    text = str(err.value)
    assert "Toy checkpoint conversion failed" in text
    assert "off.extra" in text and "head.weight" in text and "(4, 3)" in text


def test_skip_on_shape_mismatch_and_ignore():
    official = {
        "off.a.weight": torch.ones(2, 3),
        "off.head.weight": torch.ones(81, 3),
        "off.bn.num_batches_tracked": torch.tensor(3),
    }
    out = convert_with_key_map(
        official,
        _map,
        REFERENCE,
        "Toy",
        may_skip_on_shape_mismatch=lambda ours: ours.startswith("head."),
        ignore=lambda key: key.endswith("num_batches_tracked"),
    )
    assert list(out) == ["a.weight"]
