#!/usr/bin/env python
"""Train or evaluate any VIS Zoo method.

    python tools/train_net.py --config-file configs/ifc/synthetic_R18.yaml
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file CFG --num-gpus 2        # 2 processes (gloo on CPU)
    python tools/train_net.py --config-file CFG --resume            # continue from last_checkpoint

Trailing `KEY VALUE` pairs override the config. The method is chosen by MODEL.META_ARCHITECTURE.
A config with MODEL.INIT_STAGE_CONFIG first trains that config (vis_zoo/engine/init_stage.py).
"""
import logging
import os

from detectron2.evaluation import verify_results
from detectron2.utils import comm

from vis_zoo.engine import AtomicDetectionCheckpointer, VISTrainer, build_argument_parser, setup
from vis_zoo.engine.checks import check_eval_weights
from vis_zoo.engine.cli import config_errors_as_exit
from vis_zoo.engine.init_stage import run_init_stage
from vis_zoo.engine.launch import launch

logger = logging.getLogger("vis_zoo")


def main(args):
    with config_errors_as_exit():
        cfg = setup(args)
    if args.eval_only:
        check_eval_weights(cfg, resume=args.resume, allow_random_weights=args.allow_random_weights)
        model = VISTrainer.build_model(cfg)
        # strict: weights of another method or config must not be evaluated as if they fitted
        AtomicDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR, strict_model=True).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = VISTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results

    if cfg.MODEL.INIT_STAGE_CONFIG and not cfg.MODEL.WEIGHTS:
        # train the initialisation stage (unless a resumed run has its own checkpoint to continue from)
        if not (args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))):
            weights = run_init_stage(cfg, args.config_file, VISTrainer)
            cfg.defrost()
            cfg.MODEL.WEIGHTS = weights
            cfg.freeze()

    trainer = VISTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    parser = build_argument_parser(__doc__)
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="with --eval-only: evaluate without MODEL.WEIGHTS (a random model) on purpose")
    args = parser.parse_args(argv)
    print("Command Line Args:", args)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
