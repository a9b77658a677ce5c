"""Every shipped config resolves and yields the learning-rate schedule it asks for: a config whose
LR
steps do not fit its MAX_ITER (fvcore rejects a milestone >= the number of updates) only fails when
training starts, which for the long real-data configs would be hours into a user's job. A config
with an initialisation stage (MODEL.INIT_STAGE_CONFIG) is checked with its stage, also when the run
is shortened on the command line (the stage is shortened with it, vis_zoo/engine/init_stage.py)."""

import glob
import os

import pytest
import torch
from detectron2.solver import build_lr_scheduler

from vis_zoo.engine.setup import build_config

CONFIG_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
CONFIGS = sorted(glob.glob(os.path.join(CONFIG_ROOT, "*", "*.yaml")))
STAGED = [p for p in CONFIGS if build_config(p, ["MODEL.DEVICE", "cpu"]).MODEL.INIT_STAGE_CONFIG]


def test_configs_are_found():
    methods = {os.path.basename(os.path.dirname(p)) for p in CONFIGS}
    assert {"ifc", "vistr", "seqformer", "vita", "minvis"} <= methods
    assert STAGED, "no config has an initialisation stage: the stage tests below check nothing"


def check_lr_schedule(cfg, where: str) -> None:
    """The scheduler detectron2 builds from `cfg` follows SOLVER.STEPS / GAMMA / WARMUP_*."""
    assert cfg.SOLVER.MAX_ITER > 0, where
    assert all(0 < s < cfg.SOLVER.MAX_ITER for s in cfg.SOLVER.STEPS), (where, cfg.SOLVER.STEPS)
    assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR", where
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)  # raises for an invalid schedule
    max_iter, steps, gamma = cfg.SOLVER.MAX_ITER, list(cfg.SOLVER.STEPS), cfg.SOLVER.GAMMA
    # the multiplier (fvcore ParamScheduler over the fraction of training done) just after warmup,
    # at each step and at the last iteration
    for it in sorted({min(cfg.SOLVER.WARMUP_ITERS, max_iter - 1), *steps, max_iter - 1}):
        expected = gamma ** sum(s <= it for s in steps)
        if it < cfg.SOLVER.WARMUP_ITERS:
            continue  # inside warmup: only the end of warmup is checked
        got = scheduler._multiplier(it / max_iter)
        assert got == pytest.approx(expected), (where, it, got, expected)


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: os.path.relpath(p, CONFIG_ROOT))
def test_config_resolves_and_its_lr_schedule_builds(config_file):
    cfg = build_config(config_file, [])
    check_lr_schedule(cfg, config_file)
    if cfg.DATASETS.DATASET_RATIO:
        assert len(cfg.DATASETS.DATASET_RATIO) == len(cfg.DATASETS.TRAIN), config_file
    if (
        cfg.MODEL.INIT_STAGE_CONFIG
    ):  # the stage config exists, resolves and trains the same model kind
        from vis_zoo.engine.init_stage import build_init_stage_config

        stage = build_init_stage_config(cfg, config_file)
        assert stage.OUTPUT_DIR == os.path.join(cfg.OUTPUT_DIR, "init_stage")
        check_lr_schedule(stage, f"init stage of {config_file}")


@pytest.mark.parametrize("config_file", STAGED, ids=lambda p: os.path.relpath(p, CONFIG_ROOT))
@pytest.mark.parametrize("max_iter", [2, 1, "double"])
def test_a_shortened_run_shortens_its_init_stage(config_file, max_iter):
    """`SOLVER.MAX_ITER N` scales the stage's schedule by N / (the file's MAX_ITER), rounded up."""
    from vis_zoo.engine.init_stage import build_init_stage_config

    full = build_config(config_file, ["MODEL.DEVICE", "cpu"])
    full_stage = build_init_stage_config(full, config_file)
    new_max = 2 * full.SOLVER.MAX_ITER if max_iter == "double" else max_iter
    run = build_config(
        config_file, ["MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", str(new_max), "SOLVER.STEPS", "()"]
    )
    stage = build_init_stage_config(run, config_file)
    factor = new_max / full.SOLVER.MAX_ITER
    expected = max(1, -(-full_stage.SOLVER.MAX_ITER * new_max // full.SOLVER.MAX_ITER))
    assert stage.SOLVER.MAX_ITER == expected
    if max_iter != "double":
        assert stage.SOLVER.MAX_ITER <= max_iter  # the stage is never longer than a shortened run
    else:
        assert stage.SOLVER.MAX_ITER == 2 * full_stage.SOLVER.MAX_ITER
    assert (
        1
        <= stage.SOLVER.CHECKPOINT_PERIOD
        <= max(1, full_stage.SOLVER.CHECKPOINT_PERIOD * factor + 1)
    )
    check_lr_schedule(stage, f"init stage of {config_file} at MAX_ITER {new_max}")
