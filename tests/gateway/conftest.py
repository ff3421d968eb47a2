"""Shared fixtures of the gateway tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig


@pytest.fixture
def gateway_config(tmp_path: Path) -> GatewayConfig:
    """A gateway configuration with its data under the test's tmp folder and no nodes."""
    return GatewayConfig(
        data_dir=tmp_path / "gateway",
        keystore_passphrase="test passphrase",
        cookie_secure=False,
    )
