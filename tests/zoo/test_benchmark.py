"""vis_zoo.zoo.benchmark: discovery of the method configs."""

import os

import pytest

from vis_zoo.zoo.benchmark import discover_configs
from tests.zoo.zoo_helpers import REPO


def test_discover_configs_finds_every_method_folder(tmp_path):
    for method, names in {
        "zeta": ["synthetic_R18", "ytvis19_R50"],
        "alpha": ["synthetic_R18"],
        "beta": [],
    }.items():
        (tmp_path / method).mkdir()
        for n in names:
            (tmp_path / method / f"{n}.yaml").write_text("MODEL: {}\n")
    keys = [e.key for e in discover_configs(str(tmp_path))]
    assert keys == ["alpha/synthetic_R18", "zeta/synthetic_R18", "zeta/ytvis19_R50"]
    assert [
        e.key for e in discover_configs(str(tmp_path), methods=["zeta"], names=["ytvis19_R50"])
    ] == ["zeta/ytvis19_R50"]
    with pytest.raises(ValueError, match="gamma"):
        discover_configs(str(tmp_path), methods=["gamma"])
    # the repository's own methods are all found
    methods = {e.method for e in discover_configs(os.path.join(REPO, "configs"))}
    assert {"ifc", "vistr", "seqformer", "vita", "minvis"} <= methods
