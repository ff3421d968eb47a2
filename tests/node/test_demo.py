"""The README's first command: the demo port runs end to end (real processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.integration
def test_demo_runs_a_vessel_call_through_four_validators(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "demo",
            "--datadir",
            str(tmp_path / "devnet"),
            "--events",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "demo OK" in out and "every root verified" in out
    assert "2 events for CSQU3054383 (expected 2)" in out
