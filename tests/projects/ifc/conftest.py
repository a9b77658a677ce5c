"""Fixtures of the IFC tests; the helpers live in `tests.projects.ifc.ifc_helpers`."""

import pytest

from tests.projects.ifc.ifc_helpers import tiny_model


@pytest.fixture
def model():
    return tiny_model()
