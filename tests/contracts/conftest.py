"""Fixtures of the contract tests (the helpers live in ``tests.support.deployment``)."""

from __future__ import annotations

import pytest

from tests.support.deployment import Deployment, reset_port


@pytest.fixture
def port() -> Deployment:
    """A freshly deployed test port."""
    return reset_port()
