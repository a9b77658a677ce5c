"""Installs `vis_zoo` (the shared library) and the method packages under `projects/`.

Each folder `projects/<method>/` is installed as the package `vis_zoo_projects.<method>` so that a
method imports the shared pieces from `vis_zoo` and never needs a `sys.path` hack.
"""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def project_packages():
    """Map every `projects/<method>` folder (with an `__init__.py`) to
    `vis_zoo_projects.<method>`."""
    packages, package_dir = ["vis_zoo_projects"], {"vis_zoo_projects": "projects"}
    root = os.path.join(HERE, "projects")
    for name in sorted(os.listdir(root)):
        if os.path.isfile(os.path.join(root, name, "__init__.py")):
            packages.append(f"vis_zoo_projects.{name}")
            package_dir[f"vis_zoo_projects.{name}"] = f"projects/{name}"
    return packages, package_dir


proj_packages, proj_dirs = project_packages()

setup(
    name="vis_zoo",
    version="0.1.0",
    description="Transformer video instance segmentation (VisTR, IFC, SeqFormer, VITA) on "
    "detectron2",
    python_requires=">=3.10",
    packages=find_packages(include=["vis_zoo", "vis_zoo.*"]) + proj_packages,
    package_dir={**proj_dirs},
    include_package_data=True,
)
