"""tools/demo.py loads MODEL.WEIGHTS with the training tools' checkpointer: a damaged file is
named."""

import os

import pytest
import torch

from tests.tools.tool_loading import REPO, load_tool


def test_truncated_weights_name_the_file(tmp_path):
    from vis_zoo.engine.checkpoint import DamagedCheckpointError
    from vis_zoo.engine.setup import build_config

    demo = load_tool("demo.py")
    full, weights = tmp_path / "full.pth", tmp_path / "model_final.pth"
    torch.save({"model": {"weight": torch.zeros(1000)}}, str(full))
    weights.write_bytes(full.read_bytes()[:1000])
    cfg = build_config(
        os.path.join(REPO, "configs", "vita", "synthetic_R18.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(weights)],
    )
    with pytest.raises(
        DamagedCheckpointError, match=f"{weights} \\(1,000 bytes\\).*damaged or incomplete"
    ):
        demo.build_demo_model(cfg)
