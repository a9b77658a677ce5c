"""A checkpoint of another method or config: an error for evaluation and the demo, a one-line
warning with the counts for training."""

import logging
import os

import pytest
import torch

from vis_zoo.engine import AtomicDetectionCheckpointer
from vis_zoo.engine.checkpoint import CheckpointMismatchError
from vis_zoo.engine.setup import build_config

from tests.tools.tool_loading import load_tool

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def _model(method, *opts):
    from detectron2.modeling import build_model

    cfg = build_config(
        os.path.join(CONFIGS, method, "synthetic_R18.yaml"), ["MODEL.DEVICE", "cpu", *opts]
    )
    return cfg, build_model(cfg)


@pytest.fixture(scope="module")
def ifc_checkpoint(tmp_path_factory):
    _, model = _model("ifc")
    path = str(tmp_path_factory.mktemp("ckpt") / "ifc_model_final.pth")
    torch.save({"model": model.state_dict()}, path)
    return path


def test_demo_refuses_a_checkpoint_of_another_method(ifc_checkpoint):
    demo = load_tool("demo.py")
    cfg, _ = _model("vita", "MODEL.WEIGHTS", ifc_checkpoint)
    with pytest.raises(CheckpointMismatchError) as error:
        demo.build_demo_model(cfg)
    message = str(error.value)
    assert ifc_checkpoint in message and "does not fit the model" in message
    assert "model tensor(s) missing from the checkpoint" in message
    assert "checkpoint tensor(s) the model does not have" in message


def test_another_class_count_is_a_shape_mismatch(ifc_checkpoint):
    _, model = _model(
        "ifc", "MODEL.IFC.NUM_CLASSES", "7", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"
    )
    with pytest.raises(
        CheckpointMismatchError, match=r"0 model tensor\(s\) missing.*[1-9]\d* with another shape"
    ):
        AtomicDetectionCheckpointer(model, strict_model=True).load(ifc_checkpoint)


def test_training_from_a_partial_checkpoint_warns(ifc_checkpoint, caplog):
    _, model = _model(
        "ifc", "MODEL.IFC.NUM_CLASSES", "7", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"
    )
    checkpointer = AtomicDetectionCheckpointer(model)
    with caplog.at_level(logging.WARNING):
        checkpointer.load(ifc_checkpoint)
    assert any(
        "Training starts from a partial checkpoint" in r.getMessage() for r in caplog.records
    )
    assert (
        checkpointer.load("") == {}
    )  # no weights: nothing to load, no "Loading from" an empty path
