"""What each node of a devnet reports: :func:`node_status` (never raises) and a status table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich import box
from rich.table import Table

from devnet.jsonrpc import RpcClient, RpcError
from devnet.layout import OBSERVER, NodeSpec

#: Columns of the status view.
STATUS_COLUMNS = ("node", "role", "address", "height", "head", "round", "peers", "pending", "state")


@dataclass(frozen=True)
class NodeStatus:
    """What one node reports (``portledger_status``), or why it reports nothing."""

    name: str
    role: str
    address: str
    up: bool
    """The node answered JSON-RPC."""
    height: int | None = None
    head_hash: str | None = None
    round: int | None = None
    """Consensus round at ``height + 1``; ``None`` for an observer or when unknown."""
    peers: tuple[str, ...] | None = None
    validators: tuple[str, ...] | None = None
    pending: int | None = None
    round_changes: int | None = None
    """Round changes the node entered since it started (``roundChanges``)."""
    halted: str | None = None
    """Why consensus halted on this node (``halted``); ``None`` while it runs."""
    error: str | None = None
    """Why ``up`` is false, or why ``portledger_status`` was not available."""
    process: str | None = None
    """``running``, ``paused``, ``exited <code>`` or ``not started`` when this harness runs it."""


def node_status(node: NodeSpec, timeout: float = 2.0, process: str | None = None) -> NodeStatus:
    """Query one node; never raises.

    Nodes without ``portledger_status`` (no consensus runtime) still report height, head and
    pool size through the standard methods.
    """
    down = NodeStatus(node.name, node.role, node.address, up=False, process=process)
    if process is not None and process != "running":
        return replace(down, error=process)
    client = RpcClient(node.host, node.rpc_port, timeout)
    try:
        status, head, pool = client.batch(
            [
                ("portledger_status", []),
                ("eth_getBlockByNumber", ["latest", False]),
                ("txpool_status", []),
            ]
        )
    except (OSError, RpcError) as exc:
        return replace(down, error=str(exc) or type(exc).__name__)
    finally:
        client.close()
    if isinstance(status, dict):
        try:
            return replace(
                down,
                up=True,
                height=int(status["height"]),
                head_hash=str(status["headHash"]),
                round=None if status.get("round") is None else int(status["round"]),
                peers=tuple(status.get("peers") or ()),
                validators=tuple(status.get("validators") or ()),
                pending=int(status["pending"]),
                round_changes=(
                    None if status.get("roundChanges") is None else int(status["roundChanges"])
                ),
                halted=None if status.get("halted") is None else str(status["halted"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            note = f"malformed portledger_status: {exc!r}"
    else:
        note = f"portledger_status: {status}"
    return replace(
        down,
        up=True,
        height=int(head["number"], 16) if isinstance(head, dict) else None,
        head_hash=head["hash"] if isinstance(head, dict) else None,
        pending=int(pool["pending"], 16) if isinstance(pool, dict) else None,
        error=note,
    )


def status_table(statuses: Sequence[NodeStatus], title: str | None = None) -> Any:
    """A ``rich`` table of node statuses (fits 80 columns); ``?`` where a node did not say."""

    def show(value: Any) -> str:
        return "?" if value is None else str(value)

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=0)
    for column in STATUS_COLUMNS:
        table.add_column(column, no_wrap=column != "state")
    for s in statuses:
        if s.up:
            state = "[green]up[/]"
        else:
            state = "[red]down[/]" + (
                f" ({s.process})" if s.process not in (None, "running") else ""
            )
        table.add_row(
            s.name,
            s.role,
            s.address[:6] + "…",
            show(s.height),
            "?" if s.head_hash is None else s.head_hash[:6] + "…",
            "-" if s.up and s.role == OBSERVER and s.round is None else show(s.round),
            "?" if s.peers is None else str(len(s.peers)),
            show(s.pending),
            state,
        )
    return table
