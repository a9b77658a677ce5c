"""Start-up checks: class count against the data, unregistered dataset names, --eval-only without
weights. All fail before a model is built, naming the key at fault."""

import os

import pytest

from vis_zoo.engine.checks import check_eval_weights
from vis_zoo.engine.setup import build_config

from tests.tools.custom_ytvis import write_custom_ytvis
from tests.tools.tool_loading import load_tool

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
VITA = os.path.join(CONFIGS, "vita", "synthetic_R18.yaml")
IFC = os.path.join(CONFIGS, "ifc", "synthetic_R18.yaml")


@pytest.fixture(scope="module")
def six_classes(tmp_path_factory):
    """Opts registering a 6-class dataset as DATASETS.TRAIN and DATASETS.TEST."""
    files = write_custom_ytvis(str(tmp_path_factory.mktemp("six")))
    return [
        "DATASETS.YTVIS_FORMAT",
        repr((("six_classes", files["json"], files["frames"]),)),
        "DATASETS.TRAIN",
        "('six_classes',)",
        "DATASETS.TEST",
        "('six_classes',)",
        "MODEL.DEVICE",
        "cpu",
    ]


@pytest.mark.parametrize("config_value", [5, 8])
def test_class_count_that_disagrees_with_the_data_fails(six_classes, config_value):
    with pytest.raises(ValueError) as error:
        build_config(VITA, six_classes + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(config_value)])
    message = str(error.value)
    assert f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {config_value} in the config" in message
    assert "'six_classes'" in message and "has 6 classes" in message


def test_each_method_names_its_own_key(six_classes):
    with pytest.raises(
        ValueError, match=r"MODEL.IFC.NUM_CLASSES is 5 in the config.*has 6 classes"
    ):
        build_config(IFC, six_classes)


def test_unset_class_count_is_taken_from_the_training_data(six_classes):
    cfg = build_config(VITA, six_classes + ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "0"])
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 6
    cfg = build_config(IFC, six_classes + ["MODEL.IFC.NUM_CLASSES", "-1"])
    assert cfg.MODEL.IFC.NUM_CLASSES == 6


def test_unset_class_count_with_disagreeing_datasets_fails(six_classes):
    opts = six_classes + [
        "DATASETS.TEST",
        "('synthetic_vis_val',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "0",
    ]
    with pytest.raises(
        ValueError, match="disagree.*6 classes, DATASETS.TEST 'synthetic_vis_val' .* has 5"
    ):
        build_config(VITA, opts)


def test_config_file_with_ytvis_format_entries(tmp_path):
    files = write_custom_ytvis(str(tmp_path / "shop"))
    config = tmp_path / "shop_vita.yaml"
    config.write_text(
        f"_BASE_: {os.path.abspath(VITA)}\n"
        "MODEL:\n  DEVICE: cpu\n  SEM_SEG_HEAD:\n    NUM_CLASSES: 0\n"
        f"DATASETS:\n  YTVIS_FORMAT: [[shop_yaml, {files['json']}, {files['frames']}]]\n"
        "  TRAIN: ('shop_yaml',)\n  TEST: ('shop_yaml',)\n"
    )
    cfg = build_config(str(config))
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 6
    assert cfg.DATASETS.YTVIS_FORMAT[0][0] == "shop_yaml"


def test_unregistered_test_dataset_fails_listing_the_registered_ones():
    with pytest.raises(ValueError) as error:
        build_config(VITA, ["MODEL.DEVICE", "cpu", "DATASETS.TEST", "('my_vidoes_val',)"])
    message = str(error.value)
    assert "DATASETS.TEST names ['my_vidoes_val'], which is not registered" in message
    assert "synthetic_vis_val" in message and "ytvis_2019_val" in message


def test_eval_only_without_weights_is_refused(tmp_path):
    cfg = build_config(VITA, ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(SystemExit, match="--eval-only without MODEL.WEIGHTS"):
        check_eval_weights(cfg, resume=False, allow_random_weights=False)
    check_eval_weights(cfg, resume=False, allow_random_weights=True)  # on purpose: allowed
    with pytest.raises(SystemExit):  # --resume without a checkpoint to resume from
        check_eval_weights(cfg, resume=True, allow_random_weights=False)
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    check_eval_weights(cfg, resume=True, allow_random_weights=False)


def test_train_net_eval_only_without_weights_exits_with_the_message(tmp_path, capsys):
    train_net = load_tool("train_net.py")
    with pytest.raises(SystemExit, match="--allow-random-weights"):
        train_net.cli(
            [
                "--config-file",
                VITA,
                "--eval-only",
                "MODEL.DEVICE",
                "cpu",
                "OUTPUT_DIR",
                str(tmp_path),
            ]
        )
