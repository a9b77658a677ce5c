"""Where a run's messages go: everything to `OUTPUT_DIR/log.txt`, a short account to the terminal.

detectron2's `default_setup` prints some 850 lines before the first iteration (environment, the
config file, the full config, the model), with ANSI colour codes in the config even when the output
is a file. Here:

- `OUTPUT_DIR/log.txt` (`log.txt.rank<N>` for the other processes) receives every message of the
  detectron2, fvcore and VIS Zoo loggers, plain text: environment, command line, config file, full
  config, model, dataset statistics, then training.
- The terminal (the main process only) receives VIS Zoo's own messages (the run summary, evaluation
  tables), detectron2's iteration lines and evaluation results, checkpoint saves, the start and end
  of training, and every warning and error. Colour only when it is a terminal.

A message meant for the file alone passes `extra=FILE_ONLY` to the logger.
"""

import contextlib
import io
import logging
import os
import sys
from typing import List, Optional

from detectron2.utils import comm

from .threads import configure_cpu_threads

__all__ = ["FILE_ONLY", "TerminalFilter", "run_summary", "setup_run_logging", "start_run"]

FILE_ONLY = {"file_only": True}
LOGGER_NAMES = ("detectron2", "fvcore", "vis_zoo", "vis_zoo_projects")
LOG_FORMAT = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"
DATE_FORMAT = "%m/%d %H:%M:%S"

# Messages of other libraries shown on the terminal, by logger name and message start.
_TERMINAL_MESSAGES = {
    "detectron2.utils.events": ("",),  # the iteration lines: eta, iter, losses, lr, memory
    "detectron2.evaluation.testing": ("copypaste",),
    "detectron2.engine.defaults": ("Evaluation results",),
    "detectron2.engine.train_loop": ("Starting training",),
    "detectron2.engine.hooks": ("Overall training speed", "Total training time"),
    "fvcore.common.checkpoint": ("Saving checkpoint",),
}

_installed: List[tuple] = []  # (logger, handler) pairs of the last setup, removed by the next one


class TerminalFilter(logging.Filter):
    """Lets through to the terminal what a user watching a run needs (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if getattr(record, "file_only", False):
            return False
        if record.name.split(".")[0] in ("vis_zoo", "vis_zoo_projects"):
            return True
        starts = _TERMINAL_MESSAGES.get(record.name)
        return starts is not None and str(record.msg).startswith(starts)


class _StdoutHandler(logging.StreamHandler):
    """A StreamHandler on whatever `sys.stdout` is when a message is written (a tool run in a test
    whose captured stdout is closed and replaced afterwards must not write to the closed one)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it
        pass


class _ShortFormatter(logging.Formatter):
    """`[time name]: message` with detectron2's abbreviation d2; green prefix on a terminal."""

    def __init__(self, colour: bool):
        super().__init__(datefmt=DATE_FORMAT)
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        name = record.name.replace("detectron2.", "d2.", 1)
        prefix = f"[{self.formatTime(record, self.datefmt)} {name}]: "
        if record.levelno >= logging.WARNING:
            prefix += f"{record.levelname}: "
        if self.colour:
            code = "31" if record.levelno >= logging.WARNING else "32"
            prefix = f"\033[{code}m{prefix}\033[0m"
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return prefix + text


def setup_run_logging(output_dir: Optional[str], stream=None) -> None:
    """Send the run's loggers to the terminal (filtered) and to `output_dir/log.txt` (everything).

    Calling it again (another run in the same process, as the tests do) replaces the handlers."""
    for logger, handler in _installed:
        logger.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()
    _installed.clear()
    rank = comm.get_rank()
    handlers: List[logging.Handler] = []
    if rank == 0:
        terminal = _StdoutHandler() if stream is None else logging.StreamHandler(stream)
        stream = sys.stdout if stream is None else stream
        terminal.addFilter(TerminalFilter())
        is_tty = hasattr(stream, "isatty") and stream.isatty()
        terminal.setFormatter(_ShortFormatter(colour=is_tty and not os.environ.get("NO_COLOR")))
        handlers.append(terminal)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        filename = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}")
        log_file = logging.FileHandler(filename, mode="a", encoding="utf-8")
        log_file.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=DATE_FORMAT))
        handlers.append(log_file)
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        # handlers of an earlier detectron2 setup_logger() would print everything a second time
        for old in list(logger.handlers):
            logger.removeHandler(old)
        for handler in handlers:
            logger.addHandler(handler)
            _installed.append((logger, handler))


def run_summary(cfg, *, eval_only: bool, resume: bool) -> str:
    """The few lines shown before a run starts: method, data, length, where everything goes."""
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog

    def describe(names) -> str:
        parts = []
        for name in names:
            classes = (
                MetadataCatalog.get(name).get("thing_classes", None)
                if name in DatasetCatalog.list()
                else None
            )
            parts.append(f"{name} ({len(classes)} classes)" if classes else name)
        return ", ".join(parts) or "none"

    out = cfg.OUTPUT_DIR
    weights = cfg.MODEL.WEIGHTS or "random initialisation"
    if eval_only:
        lines = [
            f"Evaluating {cfg.MODEL.META_ARCHITECTURE} on {describe(cfg.DATASETS.TEST)}",
            f"  weights: {weights}"
            + (" (or the last checkpoint of the output folder)" if resume else ""),
            f"  results: {os.path.join(out, 'inference')}/<dataset>/results.json; "
            f"full log: {os.path.join(out, 'log.txt')}",
        ]
        return "\n".join(lines)
    period = cfg.SOLVER.CHECKPOINT_PERIOD
    device = str(cfg.MODEL.DEVICE)
    if device.startswith("cpu"):
        threads = torch.get_num_threads()
        device += f" ({threads} thread{'s' if threads > 1 else ''}, docs/training.md)"
    evaluation = (
        f"every {cfg.TEST.EVAL_PERIOD} iterations and at the end"
        if cfg.TEST.EVAL_PERIOD > 0
        else "at the end"
    )
    lines = [
        f"Training {cfg.MODEL.META_ARCHITECTURE} for {cfg.SOLVER.MAX_ITER} iterations of "
        f"{cfg.SOLVER.IMS_PER_BATCH} clips on {device}, from {weights}"
        + (" (or the last checkpoint: --resume)" if resume else ""),
        f"  train: {describe(cfg.DATASETS.TRAIN)}",
        (
            f"  test:  {describe(cfg.DATASETS.TEST)}, {evaluation}"
            if cfg.DATASETS.TEST
            else "  test:  none"
        ),
        f"  output folder: {out}",
        f"  checkpoints: {os.path.join(out, 'model_XXXXXXX.pth')} every {period} iterations, "
        "the final "
        f"model {os.path.join(out, 'model_final.pth')}",
        f"  full log (environment, config, model): {os.path.join(out, 'log.txt')}; "
        f"config: {os.path.join(out, 'config.yaml')}",
    ]
    return "\n".join(lines)


def start_run(cfg, args) -> None:
    """detectron2's `default_setup`, with the logging above: output folder, log handlers, the run's
    details in log.txt only, `OUTPUT_DIR/config.yaml`, seeds, cuDNN benchmark."""
    import torch
    from detectron2.utils.collect_env import collect_env_info
    from detectron2.utils.env import seed_all_rng

    from vis_zoo.utils.io import atomic_open

    output_dir = cfg.OUTPUT_DIR
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    setup_run_logging(output_dir)
    configure_cpu_threads(cfg.MODEL.DEVICE)
    logger = logging.getLogger("vis_zoo.engine")
    rank = comm.get_rank()
    logger.info(
        f"Rank of current process: {rank}. World size: {comm.get_world_size()}", extra=FILE_ONLY
    )
    # collecting it imports torch.utils.cpp_extension, which prints a CUDA_HOME note to stderr on
    # machines with a CUDA toolkit but no GPU: that note belongs in the log with the rest
    with contextlib.redirect_stderr(io.StringIO()) as printed:
        environment = collect_env_info()
    logger.info(f"Environment info:\n{environment}{printed.getvalue()}", extra=FILE_ONLY)
    logger.info(f"Command line: {' '.join(sys.argv)}\nArguments: {args}", extra=FILE_ONLY)
    config_file = getattr(args, "config_file", "")
    if config_file:
        with open(config_file, "r") as f:
            logger.info(f"Contents of {config_file}:\n{f.read()}", extra=FILE_ONLY)
    logger.info(f"Running with full config:\n{cfg.dump()}", extra=FILE_ONLY)
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        with atomic_open(path, "w") as f:
            f.write(cfg.dump())
        logger.info(f"Full config saved to {path}", extra=FILE_ONLY)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
