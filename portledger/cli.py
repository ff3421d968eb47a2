"""The ``portledger`` command.

::

    portledger init    --datadir D [--genesis genesis.json] [--dev-key validator:0 | --key-file F]
    portledger node    --datadir D [--rpc-host 127.0.0.1] [--rpc-port 8545] [--report-key-file F]
    portledger export  --datadir D FILE [--first N] [--last M]
    portledger import  --datadir D FILE
    portledger replay  --datadir D | --blocks FILE --genesis G
    portledger proof   --datadir D (--event-id N | --subject REF | --tx HASH --log-index I) --out F
    portledger verify-proof FILE --genesis genesis.json   # offline, exit 0 or the failed check
    portledger gateway serve|rebuild --config F
    portledger feed parse [--format F] FILE   # what a feed file becomes (JSON Lines)
    portledger feed push --format F FILE --gateway URL   # a file drop into the gateway
    portledger alerts evaluate --events F.jsonl --tariff T.json --now TIME   # dry run
    portledger demo-accounts --config F --out credentials.json   # PUBLIC development keys
    portledger demo    [--datadir D] [--once]   # the demo port: devnet + gateway, SIMULATED feeds
    portledger devnet  [--dir D] [--validators 4] [--observers 1]   # run a local network, live status

Each package owns its commands (:mod:`node.cli`, :mod:`proofs.cli`, :mod:`gateway.cli`,
:mod:`devnet.cli`); this module only puts them under one name. Every failure exits non-zero
with a one-line reason.
"""

from __future__ import annotations

import logging

import click

from devnet import cli as devnet_cli
from gateway.alerts import cli as alerts_cli
from gateway.cli import gateway
from gateway.feeds import cli as feeds_cli
from node import cli as node_cli
from proofs import cli as proofs_cli


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """PortLedger: a blockchain-native Port Community System."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("eth", "trie", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


for _command in (*node_cli.COMMANDS, *proofs_cli.COMMANDS, gateway, *feeds_cli.COMMANDS, *alerts_cli.COMMANDS,
                 *devnet_cli.COMMANDS):
    main.add_command(_command)
