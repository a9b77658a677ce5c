"""Fixtures of the IFC tests; the helpers live in ifc_helpers.py (importable by the test
modules)."""

import pytest

from ifc_helpers import tiny_model


@pytest.fixture
def model():
    return tiny_model()
