"""Two-stage training in one `tools/train_net.py` run: an initialisation stage, then the config itself.

A config with `MODEL.INIT_STAGE_CONFIG` set (and `MODEL.WEIGHTS` empty) first trains that other config
into `<OUTPUT_DIR>/init_stage/` and starts from its `model_final.pth`. It is the one-command form of
recipes that start from another model trained on the same data, e.g. VisTR's synthetic recipe: a
one-frame VisTR (DETR with VisTR's mask head) trained on frames, then the T-frame model, as the
official VisTR starts from an image DETR. Both stages log to the run's log.txt, so the run's training
time covers both (see `vis_zoo.zoo.benchmark.parse_train_log`).

The stage config takes from the run only OUTPUT_DIR (the subfolder), SEED, MODEL.DEVICE and
DATASETS.SYNTHETIC_ROOT; command-line overrides of the run do not reach it. A finished stage
(`model_final.pth` present) is reused, an interrupted one resumes from its last checkpoint.
"""
import logging
import os

from detectron2.utils import comm

from vis_zoo.utils.io import atomic_open

from .setup import build_config

logger = logging.getLogger("vis_zoo")

INIT_STAGE_DIR = "init_stage"


def resolve_init_stage_config(path: str, config_file: str) -> str:
    """`MODEL.INIT_STAGE_CONFIG` as a file: absolute, or relative to the folder of `config_file`.

    Raises FileNotFoundError naming the key and both paths when it does not exist."""
    resolved = path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(config_file)), path)
    if not os.path.isfile(resolved):
        raise FileNotFoundError(
            f"MODEL.INIT_STAGE_CONFIG {path!r} (of {config_file!r}): no such file {resolved!r}")
    if os.path.abspath(resolved) == os.path.abspath(config_file):
        raise ValueError(f"MODEL.INIT_STAGE_CONFIG of {config_file!r} names the config itself")
    return resolved


def init_stage_weights(cfg) -> str:
    """Where the initialisation stage of a run writes its final weights."""
    return os.path.join(cfg.OUTPUT_DIR, INIT_STAGE_DIR, "model_final.pth")


def build_init_stage_config(cfg, config_file: str):
    """The stage's config: its own file, with the run's output subfolder, seed, device, synthetic root."""
    stage_file = resolve_init_stage_config(cfg.MODEL.INIT_STAGE_CONFIG, config_file)
    stage_cfg = build_config(stage_file, [
        "OUTPUT_DIR", os.path.join(cfg.OUTPUT_DIR, INIT_STAGE_DIR),
        "SEED", cfg.SEED,
        "MODEL.DEVICE", cfg.MODEL.DEVICE,
        "DATASETS.SYNTHETIC_ROOT", cfg.DATASETS.SYNTHETIC_ROOT,
    ])
    if stage_cfg.MODEL.INIT_STAGE_CONFIG:
        raise ValueError(f"{stage_file}: an initialisation stage cannot have its own MODEL.INIT_STAGE_CONFIG "
                         f"({stage_cfg.MODEL.INIT_STAGE_CONFIG!r}); chain at most two stages")
    if stage_cfg.MODEL.META_ARCHITECTURE != cfg.MODEL.META_ARCHITECTURE:
        raise ValueError(f"{stage_file}: MODEL.META_ARCHITECTURE {stage_cfg.MODEL.META_ARCHITECTURE!r} differs from "
                         f"the run's {cfg.MODEL.META_ARCHITECTURE!r}; the stage must train the same model kind")
    stage_cfg.freeze()
    return stage_cfg


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
