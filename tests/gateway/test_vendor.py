"""The vendored map assets (gateway/ui/static/vendor/) are exactly the pinned npm packages' files.

``npm ci`` installs what gateway/ui/vendor/package-lock.json pins (integrity-checked) into a
temporary folder, and ``scripts/vendor-assets --check`` compares every vendored file byte for
byte with the package's, the gzip copy of the coastline with the file it compresses, and
SOURCES.md with the lock's versions and integrity hashes; a file that does not come from a
package is an error too. Without node and npm the test skips on a developer machine and fails
on CI (like tests/node/test_ethers.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = ROOT / "gateway" / "ui" / "vendor"
VENDOR_DIR = ROOT / "gateway" / "ui" / "static" / "vendor"
SCRIPT = ROOT / "scripts" / "vendor-assets"


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are missing on CI; .ci/run should have installed them")
        pytest.skip("node and npm are needed to check the vendored assets")
    where = tmp_path_factory.mktemp("npm")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NPM_DIR / name, where / name)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                          cwd=where, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return where / "node_modules"


def run_check(modules: Path, into: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "--check", "--modules", str(modules), "--into", str(into)],
                          capture_output=True, text=True, timeout=60)


def test_lock_pins_the_three_packages() -> None:
    lock = json.loads((NPM_DIR / "package-lock.json").read_text())
    versions = {name.removeprefix("node_modules/"): entry["version"]
                for name, entry in lock["packages"].items() if name}
    assert versions["leaflet"].startswith("1.9.")
    assert versions["world-atlas"].startswith("2.")
    assert versions["topojson-client"].startswith("3.")
    for name in ("leaflet", "world-atlas", "topojson-client"):
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")
    declared = json.loads((NPM_DIR / "package.json").read_text())["dependencies"]
    assert {name: versions[name] for name in declared} == declared  # exact pins, no ranges


@pytest.mark.js
def test_vendored_files_are_the_packages_files(modules: Path) -> None:
    done = run_check(modules, VENDOR_DIR)
    assert done.returncode == 0, done.stderr
    sources = (VENDOR_DIR / "SOURCES.md").read_text()
    for name in ("leaflet", "world-atlas", "topojson-client"):
        assert (VENDOR_DIR / name / "LICENSE").read_bytes() == (modules / name / "LICENSE"
                                                                ).read_bytes()
        assert f"## {name} " in sources


@pytest.mark.js
def test_a_changed_or_extra_file_is_found(modules: Path, tmp_path: Path) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR_DIR, copy)
    leaflet = copy / "leaflet" / "leaflet.js"
    leaflet.write_bytes(leaflet.read_bytes().replace(b"1.9.4", b"1.9.5", 1))
    (copy / "world-atlas" / "extra.json").write_text("{}")
    done = run_check(modules, copy)
    assert done.returncode == 1
    assert "differs from the package: leaflet/leaflet.js" in done.stderr
    assert "not from a package: world-atlas/extra.json" in done.stderr
