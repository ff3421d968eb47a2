"""Choosing the compiled opcode loop (:mod:`node.native`): only a build of exactly the source on
disk runs; anything else runs the source as Python. The build itself (mypyc, ~20 s of CPU) is
``-m slow``; the differential programs of ``test_interpreter.py`` run through both loops."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node import native


def package_copy(tmp_path: Path) -> Path:
    """A directory holding a copy of the loop's source, as the package holds it."""
    directory = tmp_path / "node"
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    shutil.copyfile(native.SOURCE, directory / "evmloop.py")
    return directory


def test_only_a_build_of_the_current_source_counts(tmp_path: Path) -> None:
    directory = package_copy(tmp_path)
    assert native.compiled_state(directory) == (False, "not built (python -m node.native build)")
    abi = "cpython-311-x86_64-linux-gnu"
    for name in (f"evmloop.{abi}.so", f"evmloop__mypyc.{abi}.so"):
        (directory / name).write_bytes(b"\x7fELF")
    current, why = native.compiled_state(directory)
    assert not current and "interrupted" in why  # extensions without a stamp
    (directory / "evmloop.build-stamp").write_text(native.source_digest() + "\n")
    assert native.compiled_state(directory) == (True, "compiled, current")
    # the source edited after the build: the build no longer counts
    with (directory / "evmloop.py").open("a") as source:
        source.write("\n# edited\n")
    current, why = native.compiled_state(directory)
    assert not current and "another version" in why


def test_the_python_source_is_forced_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV, "python")
    module = native.loop_module()
    assert not native.is_compiled(module)
    assert Path(module.__file__ or "") == native.SOURCE
    assert module is native.load_python()  # loaded once


def test_status_names_the_loop(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(native.ENV, "python")
    assert native.main(["status"]) == 0
    assert capsys.readouterr().out.strip() == f"EVM loop: Python ({native.ENV}=python)"


def test_a_failed_build_is_a_typed_error(tmp_path: Path) -> None:
    directory = package_copy(tmp_path)
    (directory / "evmloop.py").write_text("def run(x: int) -> str:\n    return x\n")  # mypyc refuses
    with pytest.raises(native.NativeBuildError, match="mypyc failed"):
        native.build(directory)
    assert native.extensions(directory) == []
    assert not (directory / "evmloop.build-stamp").exists()


@pytest.mark.slow
def test_build_makes_the_loop_an_extension_that_is_imported(tmp_path: Path) -> None:
    directory = package_copy(tmp_path)
    placed = native.build(directory)
    assert sorted(placed) == native.extensions(directory) and len(placed) == 2
    assert native.compiled_state(directory) == (True, "compiled, current")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", "import node.evmloop as m; print(m.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.strip().endswith(".so"), out.stdout
