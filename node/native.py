"""The compiled opcode loop: building :mod:`node.evmloop` with mypyc and choosing which runs.

``python -m node.native build`` compiles ``node/evmloop.py`` with mypyc (shipped with mypy, a
C compiler and the Python headers needed) in a scratch directory and places the two extension
modules it makes (``evmloop.<abi>.so`` and its ``evmloop__mypyc.<abi>.so`` runtime) beside the
source, then writes ``evmloop.build-stamp``: the SHA-256 of the source it compiled. The install
runs it (``scripts/install.sh``); ``--optional`` turns a failed build into a warning, the node
then runs the same source as Python.

:func:`loop_module` is what :mod:`node.interpreter` runs: the compiled module only when its
stamp matches the source now on disk (an edited ``evmloop.py`` with an old build falls back to
Python rather than run code that is no longer the source), else the source itself loaded as
Python. ``PORTLEDGER_EVMLOOP=python`` forces the Python source (benchmarks' A/B, debugging).
Both give identical results (``tests/node/test_interpreter.py`` runs its differential programs
through each).

``python -m node.native status`` says which one a node would run and why.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "evmloop.py"
STAMP = HERE / "evmloop.build-stamp"
#: Environment variable choosing the loop: ``python`` forces the source, anything else (or
#: unset) takes the compiled module when it is current.
ENV = "PORTLEDGER_EVMLOOP"
#: Name the Python source is loaded under when the compiled module is present but not used
#: (``node.evmloop`` itself would import the extension).
PYTHON_NAME = "node.evmloop_source"


class NativeBuildError(Exception):
    """mypyc (or the C compiler) failed; the message carries its output's tail."""


def source_digest(source: Path = SOURCE) -> str:
    """SHA-256 (hex) of the loop's source file."""
    return hashlib.sha256(source.read_bytes()).hexdigest()


def extensions(directory: Path = HERE) -> list[Path]:
    """The compiled loop's extension files in ``directory`` (any ABI)."""
    return sorted(directory.glob("evmloop.*.so")) + sorted(directory.glob("evmloop__mypyc.*.so"))


def compiled_state(directory: Path = HERE) -> tuple[bool, str]:
    """(is a current compiled loop present in ``directory``, why / why not)."""
    stamp = directory / STAMP.name
    if not extensions(directory):
        return False, "not built (python -m node.native build)"
    if not stamp.exists():
        return False, "built, but no build stamp (an interrupted build): rebuild"
    if stamp.read_text().strip() != source_digest(directory / SOURCE.name):
        return False, "built from another version of evmloop.py: rebuild"
    return True, "compiled, current"


def load_python() -> ModuleType:
    """The loop's source loaded as Python (whether or not a compiled module exists)."""
    found = sys.modules.get(PYTHON_NAME)
    if found is not None:
        return found
    spec = importlib.util.spec_from_file_location(PYTHON_NAME, SOURCE)
    if spec is None or spec.loader is None:  # pragma: no cover - the file is part of the package
        raise ImportError(f"cannot load {SOURCE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PYTHON_NAME] = module
    spec.loader.exec_module(module)
    return module


def is_compiled(module: ModuleType) -> bool:
    """Is ``module`` an extension module (the mypyc build) rather than Python source?"""
    return not str(getattr(module, "__file__", "")).endswith(".py")


def loop_module() -> ModuleType:
    """The loop the node runs: the compiled one when current and not overridden, else the
    Python source (logged once when a compiled build is present but stale)."""
    if os.environ.get(ENV, "").strip().lower() == "python":
        return load_python()
    current, why = compiled_state()
    if not current:
        if extensions():
            log.warning("compiled EVM loop not used: %s", why)
        return load_python()
    module = importlib.import_module("node.evmloop")
    if not is_compiled(module):  # e.g. an extension for another Python ABI
        return load_python()
    return module


def build(directory: Path = HERE, *, verbose: bool = False) -> list[Path]:
    """Compile ``directory``'s ``evmloop.py`` (the package's by default) with mypyc and install
    the extensions beside it; their paths.

    The compile runs on a copy in a scratch directory (mypyc's build tree stays out of the
    package); each extension is written to a temporary name and renamed into place, so a
    process that has the previous build mapped keeps its file. The stamp is removed first and
    written last: an interrupted build is never taken for a current one."""
    source = directory / SOURCE.name
    stamp = directory / STAMP.name
    digest = source_digest(source)
    with tempfile.TemporaryDirectory(prefix="portledger-mypyc-") as scratch:
        package = Path(scratch) / "node"
        package.mkdir()
        (package / "__init__.py").write_text("")
        shutil.copyfile(source, package / SOURCE.name)
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", f"node/{SOURCE.name}"],
            cwd=scratch, capture_output=not verbose, text=True, timeout=900, check=False,
        )
        if done.returncode != 0:
            tail = ((done.stdout or "") + (done.stderr or ""))[-3000:]
            raise NativeBuildError(f"mypyc failed (exit {done.returncode}): {tail}")
        built = extensions(package)
        if len(built) != 2:
            raise NativeBuildError(f"mypyc made {[p.name for p in built]}, expected 2 modules")
        stamp.unlink(missing_ok=True)
        for old in extensions(directory):
            old.unlink()
        placed = []
        for path in built:
            target = directory / path.name
            partial = directory / f".{path.name}.partial"
            shutil.copyfile(path, partial)
            os.replace(partial, target)
            placed.append(target)
    if source_digest(source) != digest:
        raise NativeBuildError("evmloop.py changed during the build: run it again")
    stamp.write_text(digest + "\n")
    return placed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node.native", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="compile node/evmloop.py with mypyc")
    make.add_argument("--optional", action="store_true",
                      help="a failed build is a warning (the node then runs the Python source)")
    make.add_argument("--verbose", action="store_true",
                      help="show mypyc's and the compiler's output")
    sub.add_parser("status", help="which EVM loop a node would run, and why")
    args = parser.parse_args(argv)
    if args.command == "status":
        current, why = compiled_state()
        forced = os.environ.get(ENV, "").strip().lower() == "python"
        print(f"EVM loop: {'compiled' if current and not forced else 'Python'} "
              f"({f'{ENV}=python' if forced else why})")
        return 0
    try:
        placed = build(verbose=args.verbose)
    except (NativeBuildError, OSError, subprocess.SubprocessError) as exc:
        print(f"node.native: the compiled EVM loop was not built: {exc}", file=sys.stderr)
        if args.optional:
            print("node.native: the node runs the same loop as Python (slower, same results)",
                  file=sys.stderr)
            return 0
        return 1
    print(f"node.native: built {', '.join(p.name for p in placed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
