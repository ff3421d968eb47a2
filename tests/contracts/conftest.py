"""Fixtures of the contract tests (the helpers live in ``contract_port``)."""

from __future__ import annotations

import pytest
from contract_port import Port, reset_port


@pytest.fixture
def port() -> Port:
    """A freshly deployed test port."""
    return reset_port()
