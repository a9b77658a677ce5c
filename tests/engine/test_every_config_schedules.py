"""Every shipped config resolves and yields a valid solver schedule: a config whose LR steps do not fit
its MAX_ITER (fvcore rejects a milestone >= the number of updates) only fails when training starts,
which for the long real-data configs would be hours into a user's job setup."""
import glob
import os

import pytest
import torch
from detectron2.solver import build_lr_scheduler

from vis_zoo.engine.setup import build_config

CONFIG_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
CONFIGS = sorted(glob.glob(os.path.join(CONFIG_ROOT, "*", "*.yaml")))


def test_configs_are_found():
    methods = {os.path.basename(os.path.dirname(p)) for p in CONFIGS}
    assert {"ifc", "vistr", "seqformer", "vita", "minvis"} <= methods


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: os.path.relpath(p, CONFIG_ROOT))
def test_config_resolves_and_its_lr_schedule_builds(config_file):
    cfg = build_config(config_file, [])
    assert cfg.SOLVER.MAX_ITER > 0
    assert all(0 < s < cfg.SOLVER.MAX_ITER for s in cfg.SOLVER.STEPS), (config_file, cfg.SOLVER.STEPS)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)  # raises for an invalid schedule
    assert scheduler is not None
    if cfg.DATASETS.DATASET_RATIO:
        assert len(cfg.DATASETS.DATASET_RATIO) == len(cfg.DATASETS.TRAIN), config_file
    if cfg.MODEL.INIT_STAGE_CONFIG:  # the stage config exists, resolves and trains the same model kind
        from vis_zoo.engine.init_stage import build_init_stage_config

        stage = build_init_stage_config(cfg, config_file)
        assert stage.OUTPUT_DIR == os.path.join(cfg.OUTPUT_DIR, "init_stage")
