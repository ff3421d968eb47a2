"""The devnet harness: its files (keys, genesis, peers, data directories) and real node processes.

Nothing here needs consensus: the layout is checked on disk, the load transactions are executed
in-process on the devnet's genesis, and the process tests only ask for JSON-RPC answers. Every
wait is bounded; every port is on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_utils import to_canonical_address

from devnet.errors import DevnetError
from devnet.jsonrpc import rpc_call, wait_for
from devnet.layout import DevnetLayout, NodeSpec, create_devnet, open_or_create
from devnet.load import cargo_events, cargo_publishers, percentile, record_transaction
from devnet.processes import Devnet
from node.datadir import DataDir
from node.db import LevelDB
from node.genesis import Genesis, dev_address
from node.ledger import Ledger
from portledger.cli import main


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> DevnetLayout:
    return create_devnet(tmp_path_factory.mktemp("devnet") / "net")


def node_processes(root: Path) -> list[int]:
    """Ids of live ``portledger node`` processes whose data directory is under ``root``."""
    # The project runs on Linux; without /proc this check must fail, not pass silently.
    assert Path("/proc").is_dir(), "listing processes needs Linux's /proc"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"--datadir" in argv and any(a.startswith(bytes(root)) for a in argv):
            found.append(int(entry.name))
    return found


def rpc_ok(node: NodeSpec) -> bool:
    try:
        rpc_call(node, "eth_chainId", timeout=1.0)
        return True
    except OSError:
        return False


# -- layout ------------------------------------------------------------------------------------
def test_layout_has_the_nodes_asked_for(layout: DevnetLayout) -> None:
    assert [n.name for n in layout.nodes] == [f"validator-{i}" for i in range(4)] + ["observer-0"]
    assert [n.role for n in layout.nodes] == ["validator"] * 4 + ["observer"]


def test_keys_are_fresh_distinct_and_private(layout: DevnetLayout) -> None:
    key_texts = [n.key_file.read_text().strip() for n in layout.nodes]
    assert len(set(key_texts)) == len(layout.nodes)
    dev_validators = {dev_address(f"validator:{i}") for i in range(13)}
    for node, text in zip(layout.nodes, key_texts, strict=True):
        for path in (node.key_file, node.datadir / "nodekey"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert (node.datadir / "nodekey").read_text().strip() == text
        key = DataDir(node.datadir).load_key()
        assert key.public_key.to_checksum_address() == node.address
        assert node.address not in dev_validators
    assert stat.S_IMODE((layout.root / "keys").stat().st_mode) == 0o700


def test_genesis_names_exactly_the_generated_validators_sorted(layout: DevnetLayout) -> None:
    genesis = Genesis.load(layout.genesis_path)
    generated = [to_canonical_address(n.address) for n in layout.validators]
    assert list(genesis.validators) == sorted(generated) == generated
    assert genesis.portledger["validators"] == [n.address for n in layout.validators]
    assert to_canonical_address(layout.observers[0].address) not in genesis.validators
    # each validator node is an account of the organisation that runs it (Consortium requires it)
    members = genesis.portledger["members"]
    for i, node in enumerate(layout.validators):
        assert node.address in members[i]["accounts"]
    assert genesis.chain_id == layout.chain_id


def test_peers_files_list_every_other_node(layout: DevnetLayout) -> None:
    for node in layout.nodes:
        peers = json.loads(node.peers_path.read_text())
        assert len(peers) == len(layout.nodes) - 1
        assert {(p["address"], p["host"], p["port"]) for p in peers} == {
            (other.address, other.host, other.p2p_port) for other in layout.nodes if other != node
        }


def test_ports_are_distinct_and_on_loopback(layout: DevnetLayout) -> None:
    ports = [n.rpc_port for n in layout.nodes] + [n.p2p_port for n in layout.nodes]
    assert len(set(ports)) == len(ports) == 2 * len(layout.nodes)
    assert {n.host for n in layout.nodes} == {"127.0.0.1"}


def test_every_data_dir_opens_at_the_same_genesis(layout: DevnetLayout) -> None:
    hashes = set()
    for node in layout.nodes:
        ledger = DataDir(node.datadir).open_ledger()
        try:
            hashes.add(ledger.genesis_header().hash)
            assert ledger.head().block_number == 0
        finally:
            ledger.db.close()
    assert len(hashes) == 1


def test_layout_is_saved_and_reused(layout: DevnetLayout) -> None:
    assert DevnetLayout.load(layout.root) == layout
    assert open_or_create(layout.root) == layout
    assert open_or_create(layout.root, validators=4, observers=1) == layout
    with pytest.raises(DevnetError, match="use --fresh"):
        open_or_create(layout.root, validators=3)
    with pytest.raises(DevnetError, match="not empty"):
        create_devnet(layout.root)


def test_base_port_gives_consecutive_ports(tmp_path: Path) -> None:
    small = create_devnet(tmp_path / "net", validators=1, observers=1, base_port=41_000)
    assert [(n.rpc_port, n.p2p_port) for n in small.nodes] == [(41_000, 41_002), (41_001, 41_003)]


def test_fresh_refuses_a_folder_that_is_not_a_devnet(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DevnetError, match="refusing"):
        open_or_create(tmp_path, fresh=True)
    assert (tmp_path / "precious.txt").exists()


def test_status_once_of_a_devnet_that_is_not_running(layout: DevnetLayout) -> None:
    result = CliRunner().invoke(main, ["devnet", "--dir", str(layout.root), "--status-once"])
    assert result.exit_code == 1, result.output
    for node in layout.nodes:
        assert node.name in result.output
    assert result.output.count("down") == len(layout.nodes)


def test_status_once_without_a_devnet_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["devnet", "--dir", str(tmp_path), "--status-once"])
    assert result.exit_code == 1
    assert "no usable devnet layout" in result.output


# -- load ------------------------------------------------------------------------------------
def test_load_transactions_execute_on_the_devnet_genesis(
    layout: DevnetLayout, tmp_path: Path
) -> None:
    """Every publisher's record() call is admitted by permissioning and records its events."""
    genesis = Genesis.load(layout.genesis_path)
    publishers = cargo_publishers(genesis)
    assert len(publishers) >= len(layout.validators)
    ledger = Ledger(LevelDB(str(tmp_path / "chain")), genesis)
    try:
        head = ledger.head()
        txs = []
        for i, publisher in enumerate(publishers):
            assert ledger.is_member_account(to_canonical_address(publisher.address), head)
            events = cargo_events(10, 10 * i, publisher.event_type)
            raw, tx_hash = record_transaction(
                publisher.key, chain_id=genesis.chain_id, nonce=0, gas=3_000_000, events=events
            )
            tx = ledger.decode_transaction(raw)
            assert "0x" + tx.hash.hex() == tx_hash
            txs.append(tx)
        executed = ledger.build(
            txs,
            proposer=to_canonical_address(layout.validators[0].address),
            timestamp=head.timestamp + 1,
        )
        assert not executed.result.rejected
        receipts = executed.result.receipts
        assert [r.state_root for r in receipts] == [b"\x01"] * len(txs)
        assert all(len(r.logs) == 10 + 1 for r in receipts)  # ten CargoEvent, one CargoBatch
    finally:
        ledger.db.close()


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) is None


# -- processes -------------------------------------------------------------------------------
@pytest.mark.integration
def test_devnet_processes_answer_are_signalled_and_all_stop(tmp_path: Path) -> None:
    layout = create_devnet(tmp_path / "net")
    devnet = Devnet(layout)
    try:
        devnet.start()
        devnet.wait_ready(timeout=120)
        assert sorted(node_processes(layout.root)) == sorted(devnet.pid(i) for i in range(5))
        for i in range(len(layout.nodes)):
            assert int(devnet.rpc(i, "eth_chainId"), 16) == layout.chain_id
        statuses = devnet.statuses()
        assert [s.up for s in statuses] == [True] * 5
        assert all(s.height is not None and s.head_hash for s in statuses)
        assert len({h for h in devnet.heads() if h is not None}) >= 1

        # the status view from a second terminal
        result = CliRunner().invoke(main, ["devnet", "--dir", str(layout.root), "--status-once"])
        assert result.exit_code == 0, result.output
        assert result.output.count(" up") == 5
        # ... and a second devnet command on the same folder refuses to start anything
        again = CliRunner().invoke(main, ["devnet", "--dir", str(layout.root), "--duration", "1"])
        assert again.exit_code == 1 and "already running" in again.output, again.output

        # a frozen node is down (bounded by the status timeout) and answers again after SIGCONT
        devnet.stop_process(4)
        frozen = devnet.status(4, timeout=1.0)
        assert not frozen.up and frozen.process == "paused"
        assert not rpc_ok(layout.nodes[4])
        devnet.cont(4)
        wait_for(lambda: devnet.status(4).up, 30, what="observer answering after SIGCONT")

        # SIGKILL, then the same node starts again on its data directory
        devnet.kill(1)
        assert devnet.process_state(1) == f"exited {-signal.SIGKILL}"
        assert not devnet.status(1).up
        devnet.start_node(1)
        devnet.wait_ready(timeout=120, nodes=[1])
        devnet.restart(2, timeout=120)
        assert devnet.process_state(2) == "running"
    finally:
        devnet.stop()
    assert [devnet.is_running(i) for i in range(5)] == [False] * 5
    assert node_processes(layout.root) == []
    assert not any(rpc_ok(node) for node in layout.nodes)


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_devnet_command_stops_every_node_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    root = tmp_path / "net"
    command = [sys.executable, "-m", "portledger", "devnet", "--dir", str(root), "--duration", "300"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        layout = wait_for(
            lambda: (root / "devnet.json").exists() and DevnetLayout.load(root), 120, what="layout"
        )
        assert layout and len(layout.nodes) == 5
        wait_for(lambda: all(rpc_ok(n) for n in layout.nodes), 120, what="every node answering")
        assert len(node_processes(root)) == 5
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, output.decode(errors="replace")
        assert b"stopped 5 nodes" in output
        assert node_processes(root) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in node_processes(root):  # only if the command failed to stop its own nodes
            os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
def test_devnet_command_prints_every_endpoint_when_not_on_a_tty(tmp_path: Path) -> None:
    """Into a pipe (no TTY), each node's RPC URL and p2p endpoint show as the nodes start."""
    root = tmp_path / "net"
    command = [sys.executable, "-m", "portledger", "devnet", "--dir", str(root),
               "--validators", "1", "--observers", "1", "--duration", "300"]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(proc.stdout or ()), daemon=True, name="devnet-stdout"
    )
    reader.start()
    try:
        layout = wait_for(
            lambda: (root / "devnet.json").exists() and DevnetLayout.load(root), 120, what="layout"
        )
        assert layout
        # one line per node: its name, its JSON-RPC URL and its p2p endpoint
        wanted = [(n.name, n.rpc_url, f"p2p {n.host}:{n.p2p_port}") for n in layout.nodes]

        def printed() -> bool:
            seen = list(lines)
            return all(any(all(w in line for w in want) for line in seen) for want in wanted)

        deadline = time.monotonic() + 60
        while not printed():
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "endpoints not printed:\n" + "".join(lines)
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        assert proc.returncode == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in node_processes(root):  # only if the command failed to stop its own nodes
            os.kill(pid, signal.SIGKILL)
