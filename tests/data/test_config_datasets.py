"""YouTube-VIS-format datasets from the config (DATASETS.YTVIS_FORMAT) and the shared data flags."""

import argparse
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from vis_zoo.config import get_vis_cfg
from vis_zoo.data.datasets.from_config import (
    dataset_name_from_json,
    register_config_datasets,
)
from vis_zoo.engine.cli import add_config_arguments, config_overrides

from tests.tools.custom_ytvis import CUSTOM_CATEGORIES, write_custom_ytvis

BASE_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-VIS.yaml")


def _cfg(entries):
    cfg = get_vis_cfg()
    cfg.DATASETS.YTVIS_FORMAT = entries
    return cfg


def test_register_reads_class_names_and_makes_paths_absolute(tmp_path, monkeypatch):
    files = write_custom_ytvis(str(tmp_path / "d"))
    monkeypatch.chdir(tmp_path)
    cfg = _cfg((("cfgds_names", "d/train.json", "d/frames"),))
    assert register_config_datasets(cfg) == ["cfgds_names"]
    meta = MetadataCatalog.get("cfgds_names")
    assert meta.thing_classes == [c["name"] for c in CUSTOM_CATEGORIES]
    assert meta.thing_dataset_id_to_contiguous_id == {11: 0, 12: 1, 14: 2, 15: 3, 17: 4, 19: 5}
    assert cfg.DATASETS.YTVIS_FORMAT == (("cfgds_names", files["json"], files["frames"], "ytvis"),)
    assert len(DatasetCatalog.get("cfgds_names")) == 2
    register_config_datasets(cfg)  # the same files again: nothing to do


def test_register_errors_name_the_entry(tmp_path):
    files = write_custom_ytvis(str(tmp_path / "d"))
    with pytest.raises(
        FileNotFoundError, match=r"DATASETS.YTVIS_FORMAT\[0\] \(cfgds_missing\).*nope.json"
    ):
        register_config_datasets(
            _cfg((("cfgds_missing", str(tmp_path / "nope.json"), files["frames"]),))
        )
    with pytest.raises(
        ValueError, match=r"DATASETS.YTVIS_FORMAT\[0\].*\[name, json_file, image_root\]"
    ):
        register_config_datasets(_cfg((("only_two", files["json"]),)))
    with pytest.raises(ValueError, match="evaluator type"):
        register_config_datasets(_cfg((("cfgds_ev", files["json"], files["frames"], "coco"),)))
    with pytest.raises(ValueError, match="'ytvis_2019_val' is already registered"):
        register_config_datasets(_cfg((("ytvis_2019_val", files["json"], files["frames"]),)))


def _parse(argv):
    parser = add_config_arguments(argparse.ArgumentParser())
    return parser.parse_args(argv)


def test_data_flags_become_overrides(tmp_path):
    files = write_custom_ytvis(str(tmp_path / "shop"))
    args = _parse(
        [
            "--config-file",
            BASE_CONFIG,
            "--train-data",
            files["json"],
            files["frames"],
            "--test-data",
            files["json"],
            files["frames"],
            "SOLVER.MAX_ITER",
            "3",
        ]
    )
    opts = config_overrides(args)
    assert opts[:2] == ["SOLVER.MAX_ITER", "3"]
    assert dataset_name_from_json(files["json"]) == "shop_train"
    values = dict(zip(opts[0::2], opts[1::2]))
    assert (
        values["DATASETS.TRAIN"] == "('shop_train',)"
        and values["DATASETS.TEST"] == "('shop_train',)"
    )
    assert eval(values["DATASETS.YTVIS_FORMAT"]) == (
        ("shop_train", files["json"], files["frames"]),
    )


def test_trailing_and_flag_overrides_are_one_form():
    trailing = _parse(["--config-file", BASE_CONFIG, "MODEL.DEVICE", "cpu"])
    flagged = _parse(["--config-file", BASE_CONFIG, "--opts", "MODEL.DEVICE", "cpu"])
    assert config_overrides(trailing) == config_overrides(flagged) == ["MODEL.DEVICE", "cpu"]
    with pytest.raises(SystemExit, match="--resume comes after the KEY VALUE overrides"):
        config_overrides(_parse(["--config-file", BASE_CONFIG, "MODEL.DEVICE", "cpu", "--resume"]))
    with pytest.raises(SystemExit, match="KEY VALUE pairs"):
        config_overrides(_parse(["--config-file", BASE_CONFIG, "MODEL.DEVICE"]))
