"""contracts.build and the artifacts the node and the gateway load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import contracts
from contracts import build

ROOT = Path(__file__).resolve().parents[2]


def test_artifacts_are_fresh_and_complete() -> None:
    assert build.stale() == [], "run: python -m contracts.build"
    for name in contracts.DEPLOY_ORDER:
        artifact = contracts.load_artifact(name)
        assert set(artifact) >= {"abi", "bytecode", "runtime", "source_sha256"}
        assert artifact["bytecode"].startswith("0x") and artifact["runtime"].startswith("0x")
        assert len(artifact["runtime"]) < len(artifact["bytecode"])
        assert artifact["source_sha256"] == build.source_sha256(name)


def test_check_detects_a_stale_artifact(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in contracts.DEPLOY_ORDER:
        (tmp_path / f"{name}.json").write_text((contracts.BUILD_DIR / f"{name}.json").read_text())
    monkeypatch.setattr(build, "BUILD_DIR", tmp_path)
    assert build.main(["--check"]) == 0
    artifact = json.loads((tmp_path / "Anchors.json").read_text())
    artifact["source_sha256"] = "0" * 64
    (tmp_path / "Anchors.json").write_text(json.dumps(artifact))
    assert build.stale() == ["Anchors"]
    assert build.main(["--check"]) == 1
    (tmp_path / "Declarations.json").unlink()
    assert build.stale() == ["Anchors", "Declarations"]


def test_source_hash_covers_imported_modules() -> None:
    sources = {p.name for p in build._sources(build.SOURCE_DIR / "AccessGrants.vy")}
    assert sources == {"AccessGrants.vy", "membership.vy", "IConsortium.vyi", "ICargoLedger.vyi"}
    assert "merkle.vy" in {p.name for p in build._sources(build.SOURCE_DIR / "Anchors.vy")}


def test_check_command_runs_from_anywhere(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contracts.build", "--check"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_system_addresses() -> None:
    assert contracts.DEPLOY_ORDER[0] == "Consortium"
    assert [int(contracts.SYSTEM_ADDRESSES[n], 16) for n in contracts.DEPLOY_ORDER] == list(
        range(0x1000, 0x1006)
    )
