#!/usr/bin/env python
"""Train or evaluate any VIS Zoo method.

    python tools/train_net.py --config-file configs/ifc/synthetic_R18.yaml
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file CFG --num-gpus 2        # 2 processes (gloo on CPU)
    python tools/train_net.py --config-file CFG --resume            # continue from last_checkpoint
    python tools/train_net.py --config-file CFG --train-data my/train.json my/frames \
        --test-data my/valid.json my/frames                          # YouTube-VIS-format data

Trailing `KEY VALUE` pairs override the config (`--opts KEY VALUE ...` is the same). The terminal
shows a summary and the progress; OUTPUT_DIR/log.txt has everything (docs/training.md). The method
is chosen by MODEL.META_ARCHITECTURE.
A config with MODEL.INIT_STAGE_CONFIG first trains that config (vis_zoo/engine/init_stage.py).
"""

import logging
import os
import shlex
import sys

from detectron2.evaluation import verify_results
from detectron2.utils import comm

from vis_zoo.engine import AtomicDetectionCheckpointer, VISTrainer, build_argument_parser, setup
from vis_zoo.engine.checks import check_eval_weights
from vis_zoo.engine.cli import config_errors_as_exit
from vis_zoo.engine.init_stage import run_init_stage
from vis_zoo.engine.launch import launch
from vis_zoo.engine.run_logging import run_summary

logger = logging.getLogger("vis_zoo")
_RUN = {}  # the output folder of this process's run, for the message on Ctrl-C


def main(args):
    with config_errors_as_exit():
        cfg = setup(args)
    _RUN["output_dir"] = cfg.OUTPUT_DIR
    if args.eval_only:
        check_eval_weights(
            cfg,
            resume=args.resume,
            allow_random_weights=getattr(args, "allow_random_weights", False),
        )
    logger.info(run_summary(cfg, eval_only=args.eval_only, resume=args.resume))
    if args.eval_only:
        model = VISTrainer.build_model(cfg)
        # strict: weights of another method or config must not be evaluated as if they fitted
        checkpointer = AtomicDetectionCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, strict_model=True
        )
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = VISTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results

    if cfg.MODEL.INIT_STAGE_CONFIG and not cfg.MODEL.WEIGHTS:
        # train the initialisation stage (unless a resumed run has its own checkpoint to continue
        # from)
        if not (args.resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))):
            weights = run_init_stage(cfg, args.config_file, VISTrainer)
            cfg.defrost()
            cfg.MODEL.WEIGHTS = weights
            cfg.freeze()

    trainer = VISTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None, main_func=main):
    """Parse the command line, run `main_func(args)` in each process (tests pass a wrapper)."""
    parser = build_argument_parser(__doc__)
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="with --eval-only: evaluate without MODEL.WEIGHTS (a random model) on purpose",
    )
    args = parser.parse_args(argv)
    try:
        return launch(
            main_func,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except KeyboardInterrupt:
        # Ctrl-C: one line saying how to go on, instead of a traceback from wherever training was
        print(
            f"\n{interrupted_message(args, sys.argv if argv is None else [__file__, *argv])}",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


def interrupted_message(args, argv) -> str:
    """What to run to continue an interrupted training: the same command with --resume."""
    if args.eval_only:
        return "Interrupted: the evaluation did not finish; run the same command again."
    output_dir = _RUN.get("output_dir")
    command = [sys.executable, os.path.relpath(argv[0])] + list(argv[1:])
    if "--resume" not in command:
        command.insert(2, "--resume")
    checkpoint = None
    if output_dir and os.path.isfile(os.path.join(output_dir, "last_checkpoint")):
        with open(os.path.join(output_dir, "last_checkpoint")) as f:
            checkpoint = os.path.join(output_dir, f.read().strip())
    if checkpoint is None:
        where = f" in {output_dir}" if output_dir else ""
        return (
            f"Interrupted before the first checkpoint{where}; --resume would start over: "
            f"{shlex.join(command)}"
        )
    return f"Interrupted; continue from {checkpoint} with: {shlex.join(command)}"


if __name__ == "__main__":
    cli()
