"""Compile the system contracts into ``contracts/build/<Name>.json``.

Each artifact holds ``abi``, ``bytecode`` (deploy code, hex), ``runtime`` (runtime code, hex)
and ``source_sha256``: the SHA-256 over every source file the contract uses (its own and the
modules and interfaces it imports, in path order), so a stale artifact is detected without
compiling.

Usage::

    python -m contracts.build            # write the artifacts
    python -m contracts.build --check    # exit 1 if any artifact is missing or stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import vyper
from vyper.compiler.input_bundle import FilesystemInputBundle
from vyper.compiler.settings import Settings

from contracts import BUILD_DIR, DEPLOY_ORDER

#: Folder of the Vyper sources.
SOURCE_DIR = Path(__file__).parent

#: The EVM fork the contracts target (the chain runs py-evm's PragueVM).
EVM_VERSION = "prague"

#: Contracts compiled through Vyper's Venom pipeline (``experimental_codegen``). Only the hot
#: path: ``CargoLedger.record()`` runs 15-20 % faster on py-evm with it (bench/bench_contracts.py
#: ``--codegen``), and its tests run against exactly this bytecode. The others keep the stable
#: pipeline.
VENOM_CONTRACTS = frozenset({"CargoLedger"})


def _compile(name: str, venom: bool | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Compile one contract.

    Parameters
    ----------
    name : str
        Contract name; its source is ``contracts/<name>.vy``.
    venom : bool, optional
        Use the Venom pipeline; by default, whether ``name`` is in :data:`VENOM_CONTRACTS`.

    Returns
    -------
    tuple of (dict, list of Path)
        The compiler output and the source files it read.
    """
    path = SOURCE_DIR / f"{name}.vy"
    bundle = FilesystemInputBundle([SOURCE_DIR.parent])
    output = vyper.compile_code(
        path.read_text(),
        contract_path=path.relative_to(SOURCE_DIR.parent),
        resolved_path=path,
        input_bundle=bundle,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
        settings=Settings(
            evm_version=EVM_VERSION,
            experimental_codegen=name in VENOM_CONTRACTS if venom is None else venom,
        ),
    )
    return output, _sources(path)


def _sources(path: Path) -> list[Path]:
    """List a contract's source and, transitively, the files it imports.

    Parameters
    ----------
    path : Path
        The contract's source file.

    Returns
    -------
    list of Path
        Sorted source paths.
    """
    seen: set[Path] = set()
    pending = [path]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for line in current.read_text().splitlines():
            words = line.split()
            if len(words) >= 4 and words[0] == "from" and words[2] == "import":
                folder = SOURCE_DIR / words[1].strip(".").replace(".", "/")
                for stem in words[3:]:
                    stem = stem.strip(",")
                    for ext in (".vy", ".vyi"):
                        candidate = folder / f"{stem}{ext}"
                        if candidate.exists():
                            pending.append(candidate)
    return sorted(seen)


def source_sha256(name: str) -> str:
    """Hash every source file a contract uses.

    Parameters
    ----------
    name : str
        Contract name.

    Returns
    -------
    str
        Hex SHA-256 over the relative path and bytes of each file.
    """
    digest = hashlib.sha256()
    for path in _sources(SOURCE_DIR / f"{name}.vy"):
        digest.update(str(path.relative_to(SOURCE_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_artifact(name: str, venom: bool | None = None) -> dict[str, Any]:
    """Compile a contract into its artifact.

    Parameters
    ----------
    name : str
        Contract name.
    venom : bool, optional
        Override the pipeline choice of :data:`VENOM_CONTRACTS` (benchmarks compare both).

    Returns
    -------
    dict
        ``abi``, ``bytecode``, ``runtime``, ``source_sha256``.
    """
    use_venom = name in VENOM_CONTRACTS if venom is None else venom
    output, _ = _compile(name, use_venom)
    return {
        "abi": output["abi"],
        "bytecode": output["bytecode"],
        "runtime": output["bytecode_runtime"],
        "source_sha256": source_sha256(name),
        "vyper_version": vyper.__version__,
        "evm_version": EVM_VERSION,
        "codegen": "venom" if use_venom else "legacy",
    }


def stale() -> list[str]:
    """List the contracts whose artifact is missing or older than their sources.

    Returns
    -------
    list of str
        Contract names.
    """
    out = []
    for name in DEPLOY_ORDER:
        path = BUILD_DIR / f"{name}.json"
        if not path.exists():
            out.append(name)
            continue
        artifact = json.loads(path.read_text())
        expected_codegen = "venom" if name in VENOM_CONTRACTS else "legacy"
        if (
            artifact.get("source_sha256") != source_sha256(name)
            or artifact.get("vyper_version") != vyper.__version__
            or artifact.get("codegen") != expected_codegen
        ):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the artifacts, or check them with ``--check``.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m contracts.build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any artifact is stale")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if names else 0
    BUILD_DIR.mkdir(exist_ok=True)
    for name in DEPLOY_ORDER:
        if not (SOURCE_DIR / f"{name}.vy").exists():
            print(f"skipped {name}: no source", file=sys.stderr)
            continue
        artifact = build_artifact(name)
        (BUILD_DIR / f"{name}.json").write_text(json.dumps(artifact, indent=1) + "\n")
        print(f"built {name}: {len(artifact['runtime']) // 2 - 1} bytes runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
