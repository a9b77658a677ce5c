"""Start-up checks that turn silently wrong runs into clear errors before any work is done.

- every dataset named in DATASETS.TRAIN / DATASETS.TEST is registered;
- the model's class count (each method has its own key) agrees with the datasets' classes, and is
  taken from the training data when the config leaves it unset (<= 0);
- `--eval-only` has weights to evaluate.
"""

import logging
import os
from typing import List, Optional, Tuple

logger = logging.getLogger("vis_zoo")

__all__ = ["check_dataset_names", "resolve_num_classes", "check_eval_weights"]


def check_dataset_names(cfg) -> None:
    """Raise a ValueError naming the key and listing the registered names when DATASETS.TRAIN or
    DATASETS.TEST names a dataset that is not registered."""
    import vis_zoo.data.datasets  # noqa: F401  (registers the built-in datasets)
    from detectron2.data import DatasetCatalog

    registered = set(DatasetCatalog.list())
    for key in ("TRAIN", "TEST"):
        missing = [name for name in cfg.DATASETS[key] if name not in registered]
        if missing:
            raise ValueError(
                f"DATASETS.{key} names {missing}, which {'is' if len(missing) == 1 else 'are'} not "
                f"registered. Registered datasets: {', '.join(sorted(registered))}. "
                "A YouTube-VIS-format dataset of your own: --train-data/--test-data JSON FRAMES, "
                "or DATASETS.YTVIS_FORMAT "
                "(docs/custom_datasets.md)"
            )


def _dataset_class_counts(cfg) -> List[Tuple[str, str, int]]:
    """(key, dataset name, number of classes) of the datasets whose metadata lists their classes."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    registered = set(DatasetCatalog.list())
    counts = []
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name not in registered:
                continue
            classes = MetadataCatalog.get(name).get("thing_classes", None)
            if classes:
                counts.append((f"DATASETS.{key}", name, len(classes)))
    return counts


def _describe(name: str) -> str:
    from detectron2.data import MetadataCatalog

    json_file = MetadataCatalog.get(name).get("json_file", None)
    return f"{name!r} ({json_file})" if json_file else repr(name)


def resolve_num_classes(cfg) -> Optional[int]:
    """Check the method's class-count key against the datasets and fill it in when unset.

    `cfg` must be mutable. The key is the one the method registered
    (`vis_zoo.config.register_method_config`); the datasets are those of DATASETS.TRAIN and
    DATASETS.TEST whose metadata has `thing_classes`. A key <= 0 is set to the training data's
    count (the first dataset's when there is no training set). Raises a ValueError naming the key,
    the config's value and each disagreeing dataset with its count. Returns the class count, or
    None for a meta-architecture without a class-count key.
    """
    from vis_zoo.config import method_config

    method = method_config(cfg.MODEL.META_ARCHITECTURE)
    if method is None:
        return None
    key = method.num_classes_key
    node, parts = cfg, key.split(".")
    for part in parts[:-1]:
        node = node[part]
    value = int(node[parts[-1]])
    counts = _dataset_class_counts(cfg)
    if value <= 0:
        if not counts:
            raise ValueError(
                f"{key} is {value} (take it from the data), but none of the datasets "
                f"{list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)} lists its classes; "
                f"set {key} to the number of classes"
            )
        source_key, source, count = counts[0]
        others = [c for c in counts if c[2] != count]
        if others:
            other_key, other, other_count = others[0]
            hint = ""
            if other_key == "DATASETS.TEST":  # most likely the config file's test set was kept
                hint = (
                    "; name your test set with --test-data JSON FRAMES (or DATASETS.TEST), or "
                    'test on none with DATASETS.TEST "()"'
                )
            raise ValueError(
                f"{key} is unset ({value}) and the datasets disagree: "
                f"{source_key} {_describe(source)} "
                f"has {count} classes, {other_key} {_describe(other)} has {other_count}{hint}"
            )
        node[parts[-1]] = count
        logger.info(f"{key} = {count}, the number of classes of {source_key} {source!r}")
        return count
    wrong = [c for c in counts if c[2] != value]
    if wrong:
        data_key, name, count = wrong[0]
        raise ValueError(
            f"{key} is {value} in the config, but {data_key} {_describe(name)} "
            f"has {count} classes. "
            f"A model with fewer classes than the data treats the others as 'no object'; one with "
            f"more wastes outputs. Set {key} {count}, or {key} 0 to take it from the training data"
        )
    return value


def check_eval_weights(cfg, *, resume: bool, allow_random_weights: bool) -> None:
    """`--eval-only` needs MODEL.WEIGHTS (or `--resume` with a checkpoint in OUTPUT_DIR):
    evaluating a randomly initialised model gives AP 0 and looks like a result. Raises SystemExit
    otherwise, unless `allow_random_weights`."""
    if cfg.MODEL.WEIGHTS or allow_random_weights:
        return
    if resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    raise SystemExit(
        "error: --eval-only without MODEL.WEIGHTS would evaluate a randomly initialised model. "
        "Give the weights (e.g. MODEL.WEIGHTS output/run/model_final.pth), or --resume to evaluate "
        "the last "
        f"checkpoint of OUTPUT_DIR ({cfg.OUTPUT_DIR}); --allow-random-weights evaluates random "
        "weights on purpose"
    )
