"""Two-stage training in one `tools/train_net.py` run: an initialisation stage, then the config
itself.

A config with `MODEL.INIT_STAGE_CONFIG` set (and `MODEL.WEIGHTS` empty) first trains that other
config into `<OUTPUT_DIR>/init_stage/` and starts from its `model_final.pth`. It is the one-command
form of recipes that start from another model trained on the same data, e.g. VisTR's synthetic
recipe: a one-frame VisTR (DETR with VisTR's mask head) trained on frames, then the T-frame model,
as the official VisTR starts from an image DETR. Both stages log to the run's log.txt, so the run's
training time covers both (see `vis_zoo.zoo.benchmark.parse_train_log`).

The stage config takes from the run OUTPUT_DIR (the subfolder), SEED, MODEL.DEVICE and
DATASETS.SYNTHETIC_ROOT. Its other keys are its own file's, with one rule for the run's length:

    A run whose SOLVER.MAX_ITER differs from its config file's (a command-line override) scales the
    stage's schedule by the same factor: the stage's SOLVER.MAX_ITER, SOLVER.STEPS,
    SOLVER.WARMUP_ITERS, SOLVER.CHECKPOINT_PERIOD and TEST.EVAL_PERIOD are multiplied by (run
    MAX_ITER) / (file MAX_ITER) and rounded up (MAX_ITER and the periods at least 1; steps at or
    past the new MAX_ITER are dropped).

So `SOLVER.MAX_ITER 2` on configs/vistr/synthetic_R18.yaml (2,100 iterations, a 1,400-iteration
stage) trains the stage for 2 iterations, and doubling MAX_ITER doubles both stages. Other overrides
stay with the run. A finished
stage (`model_final.pth` present) is reused, an interrupted one resumes from its last checkpoint.
"""

import logging
import math
import os

from detectron2.utils import comm

from vis_zoo.config import get_vis_cfg
from vis_zoo.utils.io import atomic_open

from .setup import build_config

logger = logging.getLogger("vis_zoo")

INIT_STAGE_DIR = "init_stage"


def resolve_init_stage_config(path: str, config_file: str) -> str:
    """`MODEL.INIT_STAGE_CONFIG` as a file: absolute, or relative to the folder of `config_file`.

    Raises FileNotFoundError naming the key and both paths when it does not exist."""
    resolved = (
        path
        if os.path.isabs(path)
        else os.path.join(os.path.dirname(os.path.abspath(config_file)), path)
    )
    if not os.path.isfile(resolved):
        raise FileNotFoundError(
            f"MODEL.INIT_STAGE_CONFIG {path!r} (of {config_file!r}): no such file {resolved!r}"
        )
    if os.path.abspath(resolved) == os.path.abspath(config_file):
        raise ValueError(f"MODEL.INIT_STAGE_CONFIG of {config_file!r} names the config itself")
    return resolved


def init_stage_weights(cfg) -> str:
    """Where the initialisation stage of a run writes its final weights."""
    return os.path.join(cfg.OUTPUT_DIR, INIT_STAGE_DIR, "model_final.pth")


def build_init_stage_config(cfg, config_file: str):
    """The stage's config: its own file, with the run's output subfolder, seed, device, synthetic
    root, and its schedule scaled as the run's MAX_ITER is (see the module docstring)."""
    stage_file = resolve_init_stage_config(cfg.MODEL.INIT_STAGE_CONFIG, config_file)
    stage_cfg = build_config(
        stage_file,
        [
            "OUTPUT_DIR",
            os.path.join(cfg.OUTPUT_DIR, INIT_STAGE_DIR),
            "SEED",
            cfg.SEED,
            "MODEL.DEVICE",
            cfg.MODEL.DEVICE,
            "DATASETS.SYNTHETIC_ROOT",
            cfg.DATASETS.SYNTHETIC_ROOT,
        ],
    )
    if stage_cfg.MODEL.INIT_STAGE_CONFIG:
        raise ValueError(
            f"{stage_file}: an initialisation stage cannot have its own MODEL.INIT_STAGE_CONFIG "
            f"({stage_cfg.MODEL.INIT_STAGE_CONFIG!r}); chain at most two stages"
        )
    if stage_cfg.MODEL.META_ARCHITECTURE != cfg.MODEL.META_ARCHITECTURE:
        raise ValueError(
            f"{stage_file}: MODEL.META_ARCHITECTURE {stage_cfg.MODEL.META_ARCHITECTURE!r} "
            f"differs from the run's {cfg.MODEL.META_ARCHITECTURE!r}; the stage must train the "
            "same model kind"
        )
    file_cfg = get_vis_cfg(cfg.MODEL.META_ARCHITECTURE)
    file_cfg.merge_from_file(config_file)  # the run's file alone, without its overrides
    file_max_iter = file_cfg.SOLVER.MAX_ITER
    if cfg.SOLVER.MAX_ITER != file_max_iter:
        scale_schedule(stage_cfg, cfg.SOLVER.MAX_ITER / file_max_iter)
        logger.info(
            f"Init stage: SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER} instead of {file_max_iter} scales "
            f"the stage to {stage_cfg.SOLVER.MAX_ITER} iterations"
        )
    stage_cfg.freeze()
    return stage_cfg


def scale_schedule(cfg, factor: float) -> None:
    """Multiply a (mutable) config's iteration counts by `factor`, rounding up: SOLVER.MAX_ITER (>=
    1), SOLVER.STEPS (those at or past the new MAX_ITER dropped), SOLVER.WARMUP_ITERS,
    SOLVER.CHECKPOINT_PERIOD (>= 1) and TEST.EVAL_PERIOD (>= 1; 0 stays 0 = never)."""
    if factor <= 0:
        raise ValueError(f"cannot scale a training schedule by {factor}")
    solver = cfg.SOLVER
    solver.MAX_ITER = max(1, math.ceil(solver.MAX_ITER * factor))
    solver.STEPS = tuple(
        s for s in (math.ceil(step * factor) for step in solver.STEPS) if s < solver.MAX_ITER
    )
    solver.WARMUP_ITERS = math.ceil(solver.WARMUP_ITERS * factor)
    solver.CHECKPOINT_PERIOD = max(1, math.ceil(solver.CHECKPOINT_PERIOD * factor))
    if cfg.TEST.EVAL_PERIOD > 0:
        cfg.TEST.EVAL_PERIOD = max(1, math.ceil(cfg.TEST.EVAL_PERIOD * factor))


def run_init_stage(cfg, config_file: str, trainer_cls) -> str:
    """Train the initialisation stage unless its final weights exist; returns their path.

    Args:
        cfg: the run's config (MODEL.INIT_STAGE_CONFIG set).
        config_file: the run's --config-file (stage paths are relative to its folder).
        trainer_cls: the trainer class (VISTrainer) to train the stage with.
    """
    weights = init_stage_weights(cfg)
    stage_cfg = build_init_stage_config(cfg, config_file)  # validates even when the stage is reused
    if os.path.isfile(weights):
        logger.info(f"Init stage: reusing {weights}")
        return weights
    if comm.is_main_process():
        os.makedirs(stage_cfg.OUTPUT_DIR, exist_ok=True)
        with atomic_open(os.path.join(stage_cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(stage_cfg.dump())
    logger.info(f"Init stage: training {cfg.MODEL.INIT_STAGE_CONFIG} into {stage_cfg.OUTPUT_DIR}")
    trainer = trainer_cls(stage_cfg)
    trainer.resume_or_load(resume=True)  # an interrupted stage continues from its last checkpoint
    trainer.train()
    comm.synchronize()  # the main process writes model_final.pth
    if not os.path.isfile(weights):
        raise RuntimeError(f"Init stage finished without writing {weights}")
    logger.info(f"Init stage: done; the run starts from {weights}")
    return weights
