"""``portledger verify-proof FILE --genesis genesis.json``: a bank's offline check of a bundle.

Exit 0 with a summary of what the bundle proves, or 1 naming the check that failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from proofs.errors import ProofError, Reason
from proofs.verify import verify_bundle


@click.command("verify-proof")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--genesis",
    "genesis_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The network's genesis.json: the only thing trusted.",
)
def verify_proof(file: str, genesis_path: str) -> None:
    """Verify a proof bundle offline; exit 0 with a summary, 1 naming what failed."""
    try:
        try:
            genesis_doc = json.loads(Path(genesis_path).read_text())
        except (OSError, ValueError) as exc:
            raise ProofError(Reason.GENESIS_FORMAT, f"cannot read {genesis_path}: {exc}") from exc
        try:
            bundle = json.loads(Path(file).read_text())
        except (OSError, ValueError) as exc:
            raise ProofError(Reason.BUNDLE_FORMAT, f"cannot read {file}: {exc}") from exc
        verified = verify_bundle(bundle, genesis_doc)
    except ProofError as exc:
        click.echo(f"FAILED {exc.reason.value}: {exc.message}", err=True)
        sys.exit(1)
    click.echo(verified.describe())


COMMANDS: tuple[click.Command, ...] = (verify_proof,)
