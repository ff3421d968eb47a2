"""A devnet's files: its layout, keys, genesis, data directories and peer lists — no process.

A *devnet* is N validators and M observers on one machine, each a ``portledger node`` OS process
with its own data directory and loopback ports, all under one root folder::

    root/
      devnet.json        the layout: chain, nodes, roles, addresses, ports (reused by later runs)
      genesis.json       the demo port's members, with exactly these validators (fresh keys)
      keys/<node>.key    each node's secp256k1 key, hex, mode 0600 (given to ``portledger init``)
      <node>/            the node's data directory: genesis.json, nodekey, chain/
      <node>/peers.json  every other node, [{"address", "host", "port"}]: allowlist and dial list
      <node>/node.log    the process's stdout and stderr

Node ``i`` everywhere is ``layout.nodes[i]``: the validators first, sorted by address (genesis
order), then the observers.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_checksum_address

from devnet.errors import DevnetError
from devnet.members import demo_members
from devnet.ports import free_ports
from node.datadir import DataDirError, init_datadir
from node.genesis import QbftConfig, build_genesis, write_genesis

VALIDATOR = "validator"
OBSERVER = "observer"
LAYOUT_FILE = "devnet.json"
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class NodeSpec:
    """One node of the layout."""

    name: str
    """``validator-<i>`` or ``observer-<i>``; also its folder under the root."""
    role: str
    """:data:`VALIDATOR` or :data:`OBSERVER`."""
    address: str
    """Node address (checksummed): its p2p identity and, for a validator, its signing key."""
    host: str
    """Listen address of both ports (loopback)."""
    rpc_port: int
    """JSON-RPC over HTTP and WebSocket."""
    p2p_port: int
    """QBFT peer transport."""
    datadir: Path
    """The node's data directory (``portledger init``)."""
    key_file: Path
    """The node's key as given to ``portledger init`` (hex, mode 0600)."""

    @property
    def is_validator(self) -> bool:
        return self.role == VALIDATOR

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}"

    @property
    def peers_path(self) -> Path:
        return self.datadir / "peers.json"

    @property
    def log_path(self) -> Path:
        return self.datadir / "node.log"


@dataclass(frozen=True)
class DevnetLayout:
    """Where everything of a devnet is: saved as ``root/devnet.json``."""

    root: Path
    """Absolute root folder."""
    chain_id: int
    """The genesis chain id."""
    nodes: tuple[NodeSpec, ...]
    """Validators (sorted by address, as in genesis), then observers."""

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    @property
    def validators(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.is_validator)

    @property
    def observers(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if not n.is_validator)

    def peers_of(self, node: NodeSpec) -> list[dict[str, Any]]:
        """The ``peers.json`` document of ``node``: every other node's address and p2p port."""
        return [
            {"address": other.address, "host": other.host, "port": other.p2p_port}
            for other in self.nodes
            if other.name != node.name
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LAYOUT_VERSION,
            "chainId": self.chain_id,
            "genesis": self.genesis_path.name,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "address": n.address,
                    "host": n.host,
                    "rpcPort": n.rpc_port,
                    "p2pPort": n.p2p_port,
                    "datadir": str(n.datadir.relative_to(self.root)),
                    "keyFile": str(n.key_file.relative_to(self.root)),
                }
                for n in self.nodes
            ],
        }

    def save(self) -> None:
        """Write ``root/devnet.json`` atomically (a reader never sees half a layout)."""
        partial = self.root / (LAYOUT_FILE + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(partial, self.root / LAYOUT_FILE)

    @classmethod
    def load(cls, root: str | Path) -> DevnetLayout:
        root = Path(root).resolve()
        try:
            doc = json.loads((root / LAYOUT_FILE).read_text())
            if doc.get("version") != LAYOUT_VERSION:
                raise DevnetError(f"{root / LAYOUT_FILE}: layout version {doc.get('version')!r}")
            nodes = tuple(
                NodeSpec(
                    name=n["name"],
                    role=n["role"],
                    address=to_checksum_address(n["address"]),
                    host=n["host"],
                    rpc_port=int(n["rpcPort"]),
                    p2p_port=int(n["p2pPort"]),
                    datadir=root / n["datadir"],
                    key_file=root / n["keyFile"],
                )
                for n in doc["nodes"]
            )
            return cls(root=root, chain_id=int(doc["chainId"]), nodes=nodes)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DevnetError(f"no usable devnet layout in {root}: {exc}") from exc


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def create_devnet(
    root: str | Path,
    validators: int = 4,
    observers: int = 1,
    host: str = "127.0.0.1",
    base_port: int | None = None,
    *,
    qbft: QbftConfig | None = None,
) -> DevnetLayout:
    """Create a devnet's files: keys, genesis, initialised data directories, peer lists.

    Parameters
    ----------
    root : path
        A folder that does not exist yet or is empty.
    validators, observers : int
        How many nodes of each role.
    host : str
        Listen address of every port (keep it loopback: nodes do not authenticate RPC).
    base_port : int, optional
        RPC ports ``base_port + i``, p2p ports ``base_port + n + i`` for ``n`` nodes; by default
        free ports chosen by the kernel.
    qbft : QbftConfig, optional
        Timing of the genesis; the defaults of :class:`~node.genesis.QbftConfig` otherwise.

    Returns
    -------
    DevnetLayout
        The layout, already saved as ``root/devnet.json``.
    """
    root = Path(root).resolve()
    if validators < 1 or observers < 0:
        raise DevnetError("a devnet needs at least one validator and no negative observer count")
    if root.exists() and any(root.iterdir()):
        raise DevnetError(f"{root} is not empty")
    count = validators + observers
    ports = (
        free_ports(2 * count, host)
        if base_port is None
        else list(range(base_port, base_port + 2 * count))
    )
    # Genesis lists validators sorted by address (proposer order); validator-i is genesis's i-th.
    validator_keys = sorted(
        (PrivateKey(os.urandom(32)) for _ in range(validators)),
        key=lambda k: k.public_key.to_canonical_address(),
    )
    observer_keys = [PrivateKey(os.urandom(32)) for _ in range(observers)]
    members, validator_addresses = demo_members(
        validators, node_addresses=[k.public_key.to_checksum_address() for k in validator_keys]
    )
    doc = build_genesis(members, validator_addresses, qbft=qbft or QbftConfig())
    named = [(f"validator-{i}", VALIDATOR, k) for i, k in enumerate(validator_keys)]
    named += [(f"observer-{i}", OBSERVER, k) for i, k in enumerate(observer_keys)]
    layout = DevnetLayout(
        root=root,
        chain_id=int(doc["config"]["chainId"]),
        nodes=tuple(
            NodeSpec(
                name=name,
                role=role,
                address=key.public_key.to_checksum_address(),
                host=host,
                rpc_port=ports[i],
                p2p_port=ports[count + i],
                datadir=root / name,
                key_file=root / "keys" / f"{name}.key",
            )
            for i, (name, role, key) in enumerate(named)
        ),
    )
    root.mkdir(parents=True, exist_ok=True)
    try:
        (root / "keys").mkdir(mode=0o700)
        write_genesis(doc, layout.genesis_path)
        for node, (_, _, key) in zip(layout.nodes, named, strict=True):
            _write_secret(node.key_file, key.to_hex() + "\n")
            init_datadir(node.datadir, layout.genesis_path, key)
            node.peers_path.write_text(json.dumps(layout.peers_of(node), indent=2) + "\n")
        layout.save()
    except BaseException as exc:
        # Half a devnet (e.g. Ctrl-C during init) would block the next attempt: the folder
        # was empty, so nothing but what was just written goes.
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, DataDirError):
            raise DevnetError(str(exc)) from exc
        raise
    return layout


def open_or_create(
    root: str | Path,
    validators: int | None = None,
    observers: int | None = None,
    *,
    fresh: bool = False,
    base_port: int | None = None,
) -> DevnetLayout:
    """The devnet in ``root``: reused if it exists (and matches the counts asked), else created.

    ``fresh`` deletes ``root`` first, but only if it holds a devnet or nothing at all.
    """
    root = Path(root).resolve()
    if fresh and root.exists():
        if not (root / LAYOUT_FILE).exists() and any(root.iterdir()):
            raise DevnetError(f"refusing to delete {root}: it holds no {LAYOUT_FILE}")
        shutil.rmtree(root)
    if (root / LAYOUT_FILE).exists():
        layout = DevnetLayout.load(root)
        for role, wanted, have in (
            ("validators", validators, len(layout.validators)),
            ("observers", observers, len(layout.observers)),
        ):
            if wanted is not None and wanted != have:
                raise DevnetError(f"{root} has {have} {role}, not {wanted} (use --fresh)")
        return layout
    return create_devnet(
        root,
        4 if validators is None else validators,
        1 if observers is None else observers,
        base_port=base_port,
    )
