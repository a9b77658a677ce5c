"""The one trainer every method uses.

It is detectron2's DefaultTrainer with the pieces video methods need: video loaders (mixed datasets,
pseudo-clips), the YouTube-VIS/OVIS evaluator, AdamW with a backbone learning-rate multiplier,
clipping of the gradient norm of the whole model, atomic checkpoints, and DistributedDataParallel on
CPU (gloo) as well as CUDA.
"""

import itertools
import logging
import os
import weakref
from typing import Any, Dict, List, Sequence, Tuple

import torch
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .checkpoint import AtomicDetectionCheckpointer

logger = logging.getLogger(__name__)

_NORM_TYPES = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.InstanceNorm1d,
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def build_param_groups(
    model: torch.nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_embed: float,
    backbone_multiplier: float,
    name_lr_multipliers: Sequence[Tuple[str, float]] = (),
) -> List[Dict[str, Any]]:
    """One optimizer group per trainable parameter (so schedulers and overrides stay simple).

    A parameter whose name contains "backbone" gets lr × backbone_multiplier (the rule of the
    official IFC/VITA/SeqFormer code). `name_lr_multipliers` adds further (substring, factor) rules,
    applied on top (e.g. Deformable-DETR/SeqFormer train `sampling_offsets` and `reference_points`
    at 0.1x). Parameters of normalisation layers use `weight_decay_norm`; those of nn.Embedding use
    `weight_decay_embed`. Shared parameters are listed once.
    """
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            lr = base_lr * (backbone_multiplier if "backbone" in full_name else 1.0)
            for substring, factor in name_lr_multipliers:
                if substring in full_name:
                    lr *= factor
            if isinstance(module, _NORM_TYPES):
                decay = weight_decay_norm
            elif isinstance(module, torch.nn.Embedding):
                decay = weight_decay_embed
            else:
                decay = weight_decay
            groups.append({"params": [param], "lr": lr, "weight_decay": decay, "name": full_name})
    return groups


def _with_full_model_clipping(optimizer_cls, clip_value: float, norm_type: float):
    """Subclass `optimizer_cls` so that `step()` first clips the norm of ALL gradients together.

    detectron2's own clipping works per parameter; DETR-style methods clip the whole model's norm.
    """

    class FullModelGradientClipping(optimizer_cls):
        def step(self, closure=None):
            params = itertools.chain(*[group["params"] for group in self.param_groups])
            torch.nn.utils.clip_grad_norm_(params, clip_value, norm_type=norm_type)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = optimizer_cls.__name__ + "WithFullModelGradientClipping"
    return FullModelGradientClipping


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW (or SGD) with the backbone multiplier and the configured gradient clipping."""
    groups = build_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
        name_lr_multipliers=[(str(n), float(f)) for n, f in cfg.SOLVER.LR_MULTIPLIERS],
    )
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "ADAMW":
        optimizer_cls, kwargs = torch.optim.AdamW, {"lr": cfg.SOLVER.BASE_LR}
    elif name == "SGD":
        optimizer_cls, kwargs = (
            torch.optim.SGD,
            {"lr": cfg.SOLVER.BASE_LR, "momentum": cfg.SOLVER.MOMENTUM},
        )
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_cls = _with_full_model_clipping(optimizer_cls, clip.CLIP_VALUE, clip.NORM_TYPE)
        return optimizer_cls(groups, **kwargs)
    # "value" / "norm": detectron2's per-parameter clipping.
    return maybe_add_gradient_clipping(cfg, optimizer_cls)(groups, **kwargs)


class VISTrainer(DefaultTrainer):
    """DefaultTrainer for video instance segmentation (every method, every dataset)."""

    def __init__(self, cfg):
        # Same construction order as DefaultTrainer.__init__, with two differences: DDP is built
        # without device_ids on CPU (gloo), and checkpoints are written atomically.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cpu = not str(cfg.MODEL.DEVICE).startswith("cuda")
        ddp_kwargs = {"broadcast_buffers": False}
        if on_cpu:
            ddp_kwargs["device_ids"] = None
        if cfg.MODEL.get("FIND_UNUSED_PARAMETERS", False):
            ddp_kwargs["find_unused_parameters"] = True
        model = create_ddp_model(model, **ddp_kwargs)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicDetectionCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model; its printout (hundreds of lines) goes to log.txt only."""
        from detectron2.modeling import build_model

        from .run_logging import FILE_ONLY

        model = build_model(cfg)
        logger.info(f"Model:\n{model}", extra=FILE_ONLY)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        from vis_zoo.data.build import build_vis_train_loader

        return build_vis_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        from vis_zoo.data.build import build_vis_test_loader

        return build_vis_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        from vis_zoo.evaluation import YTVISEvaluator

        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(dataset_name, output_dir=output_folder)

    def build_writers(self):
        """detectron2's writers, with tensorboard's modules imported now, before training starts.

        detectron2 imports them at the first write (iteration 20), which takes about a second. A
        Ctrl-C landing in that import left a half-imported module (fsspec) that the final write
        after the interrupt tripped over: an AttributeError and a traceback instead of the resume
        message and exit status 130. With PyTorch 2.11 the first iterations are fast enough for
        that to happen to an interrupt a second after the first checkpoint."""
        import torch.utils.tensorboard  # noqa: F401

        return super().build_writers()
