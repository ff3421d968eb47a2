"""``portledger demo``: the whole demo port on one machine, and a SIMULATED vessel call through it.

What it does, in the order it prints:

1. **the network** — a devnet (:mod:`devnet.layout`, :mod:`devnet.processes`): four validators, one per stakeholder
   organisation (operator, two terminals, carrier), each with a freshly generated key, and one
   non-validating observer, every one its own OS process, talking QBFT over mutually
   authenticated TLS on loopback; then **the gateway** (:class:`devnet.gateway.Port`) in front
   of it as its own process, with the demo organisations' accounts, users and API keys
   (:mod:`devnet.accounts`).
2. **the vessel call** — SIMULATED (:mod:`devnet.simulate`, :mod:`devnet.feedstory`), played
   through the gateway's public HTTP API with each organisation's API key, each in the format
   its system speaks: the carrier registers a master B/L with three containers and reports the
   voyage as DCSA Track & Trace 2.2 TRANSPORT events; the terminal reports the discharge as a
   UN/EDIFACT COARRI; customs holds, then releases the containers in customs status messages;
   the terminal makes them available for pick-up (canonical: no standard has the code); a
   forwarder links a house B/L to two of the three. Each upload is followed to finality on
   chain (``GET /v1/submissions/{key}``).
3. **who sees what** — the trader, holding only the house B/L number, sees exactly its two
   containers; the bank sees nothing of the master B/L until the carrier grants it, then sees
   all three; the owners' access logs name who read their data.
4. **the port's systems in their own formats** (``POST /v1/feeds/{format}``) — the operator's
   AIS NMEA of the vessel coming in, the carrier's DCSA Reefer 1.0 readings of a reefer with a
   temperature excursion (for the forwarder only), the airline's Cargo-IMP FSU milestones of an
   air waybill (for the forwarder only), the terminal's CODECO gate-out; each checked as the
   parties see it (and as those who must not see it do not), then an anchored AIS reading's
   proof bundle verified offline by ``portledger verify-proof``. Then the alerts and **the land
   leg** (``/v1/land``): the haulier plans a job for one of the call's released containers,
   shared with the trader, and adds a driver, who signs in with a one-time code; the terminal
   gates the box out with the driver's signed token (the same token again is refused as a
   replay), the truck's SIMULATED positions from the terminal to the warehouse go through the
   API (the trader sees the latest), the warehouse receives the box with its seal as expected,
   and the custody chain is printed, each step signed on chain by its party (the gate-out's and
   receipt's details — vehicle, seals — are the job's parties' only).
5. **on chain** — which validators sealed each block of the story (commit seals checked against
   the parent header's validator list), the events as the observer's JSON-RPC serves them
   (subject keys in clear, no reference number or name in any log), every node at the same head.
6. **declarations** — the SIMULATED customs authority service (:mod:`devnet.authority`, its own
   process) answers the gateway's declarations: the carrier shares its master B/L with the
   trader and its forwarder; the customs organisation binds itself on chain as the Hong Kong
   and the China authority; the forwarder declares for the trader (named as reader): it
   uploads the commercial invoice once and gets the Hong Kong TDEC, a ROCARS pre-declaration
   and the China 报关单 with the declaration charge in HK$ (an EXAMPLE rate), fixes a warning
   (the correction kept with who and when), approves and submits; the authorities answer with
   official numbers and a release, the trader's tracking by the China declaration number shows
   it released, the forwarder files the declarations in ``Declarations.vy`` under keys made
   with each declaration's secret salt (never the number's plain hash) and customs posts their
   statuses (the China one's history read back from the chain, its hash the submitted
   document's; nothing under the number's plain hash, and no customs event either: they name
   the declaration's keyed alias); the trader sees that history in
   tracking, the trader and the customs organisation read the declaration, the bank neither
   the declaration nor the China number (404, as for a number nobody declared).
7. **the live port** (default) — the gateway's URL, its web pages and ``/docs``, the demo logins,
   and a SIMULATED live feed (an incoming vessel's AIS positions and ETA updates, CODECO gate
   moves) posted through the gateway every few seconds until Ctrl-C (or ``--duration``). With
   ``--once``, one tick of the live feed is played and checked instead.
8. **the auditor's replay** — every process stopped, the observer's chain re-executed from
   genesis, every root re-checked.

Every check prints ``PASS`` or ``FAIL``; the exit status is 0 only if every one passed. SIGTERM
stops every process and ends the demo with status 0 (unless a check had already failed).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import quote

from eth_utils.address import to_checksum_address
from rich import box
from rich.console import Console
from rich.table import Table

from consensus import extradata
from contracts import SYSTEM_ADDRESSES, abi
from contracts.cargo import CARGO_EVENT_TOPIC, subject_key
from devnet import feedstory, simulate
from devnet.authority import AuthorityServer
from devnet.errors import DevnetError
from devnet.gateway import GatewayClient, Port
from devnet.jsonrpc import rpc_call, wait_for
from devnet.layout import NodeSpec
from devnet.mailserver import MailServer
from devnet.members import DEMO_ORGANISATIONS
from devnet.ports import free_port
from devnet.simfeeds import cargo_imp
from devnet.status import status_table
from gateway.declarations import onchain
from gateway.declarations.store import document_hash
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.isotime import iso_time
from gateway.subscriptions.model import signature
from node.chain import QbftBlockHeader

T = TypeVar("T")

#: The gateway's port when it is free (a predictable URL for people); else any free port.
DEFAULT_GATEWAY_PORT = 8080

#: How long one view or log may take to show what was just made final (indexer lag).
VIEW_TIMEOUT = 60.0

#: Every this many live ticks, a one-line summary of the port.
SUMMARY_TICKS = 10

#: Live ticks in a row that may fail before the demo gives up (the gateway or nodes are gone).
MAX_FAILED_TICKS = 5

#: How long a telemetry reading may take to be anchored (a batch window, then a block).
ANCHOR_TIMEOUT = 120.0

#: Cargo events about the first container before the live feed: discharge (COARRI), customs
#: hold and release, available for pick-up, the reefer's set point (DCSA Reefer ADJU).
FIRST_CONTAINER_EVENTS = 5

#: A reefer reading this far (°C) above its set point is an excursion (as the alerts count).
EXCURSION_DEGREES = 1.5


class DemoError(Exception):
    """A step of the demo could not be carried out (an upload refused, a wait timed out)."""


class _Stop(Exception):
    """SIGTERM arrived: stop every process and end (exit 0 unless a check already failed)."""


@dataclass
class Checks:
    """The demo's checks, printed as they are made."""

    console: Console
    """Where to print."""
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    """(what, passed, detail) in order."""

    def check(self, what: str, passed: bool, detail: str = "") -> bool:
        """Record and print one check (``PASS``/``FAIL what (detail)``); return ``passed``."""
        self.results.append((what, passed, detail))
        tag = "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]"
        self.console.print(f"{tag} {what}" + (f" [dim]({detail})[/]" if detail else ""))
        return passed

    @property
    def ok(self) -> bool:
        """At least one check was made and every one passed."""
        return bool(self.results) and all(passed for _, passed, _ in self.results)


# -- the gateway side --------------------------------------------------------------------------
def _gateway_port(wanted: int | None) -> int:
    """``wanted`` if given (0: any free port); else :data:`DEFAULT_GATEWAY_PORT` if free."""
    if wanted:
        return wanted
    if wanted is None:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", DEFAULT_GATEWAY_PORT))
                return DEFAULT_GATEWAY_PORT
            except OSError:
                pass
    return free_port()


def _post(port: Port, upload: simulate.Upload) -> dict[str, Any]:
    """Send one upload as its party; the gateway's answer (receipts, and a feed's report).

    A feed file must be read whole: a report with an error or a refused message is a failure
    (the demo's files are ours, and clean).
    """
    client = port.clients[simulate.PARTIES[upload.party]]
    status, body, _ = client.request(upload.method, upload.path, upload.body, raw=upload.raw,
                                     headers=upload.headers)
    if status not in (200, 201, 202) or not isinstance(body, dict) or "receipts" not in body:
        raise DemoError(f"{upload.party} {upload.what}: the gateway answered {status}: {body}")
    summary = body.get("summary") or {}
    if upload.raw is not None and (summary.get("errors") or summary.get("refused")):
        problems = [line for line in body.get("report", []) if line.get("kind") == "error"]
        raise DemoError(f"{upload.party} {upload.what}: {upload.standard} not read whole: "
                        f"{problems[:3]}")
    return body


def _send(port: Port, upload: simulate.Upload) -> list[dict[str, Any]]:
    """Send one upload as its party; the receipts of the operations it created."""
    return list(_post(port, upload)["receipts"])


def _played(upload: simulate.Upload, body: dict[str, Any], final: list[dict[str, Any]],
            seconds: float) -> str:
    """Two lines saying what an upload was and what became of it."""
    numbers = sorted({r["block"] for r in final})
    done = []
    if final or upload.raw is None:
        done.append(f"{len(final)} operation(s) final in block "
                    f"{', '.join(f'#{n}' for n in numbers) or '-'}")
    readings = body.get("readings") or {}
    if readings.get("stored") or readings.get("duplicate"):
        again = f", {readings['duplicate']} already there" if readings.get("duplicate") else ""
        done.append(f"{readings.get('stored', 0)} reading(s) stored{again}, anchored in "
                    "batches")
    read = ""
    if upload.raw is not None:
        summary = body.get("summary") or {}
        read = (f"{len(upload.raw):,} bytes read: {summary.get('events', 0)} event(s), "
                f"{summary.get('readings', 0)} reading(s), {summary.get('errors', 0)} error(s); ")
    return (f"[bold]{upload.party:>9}[/] {upload.what}\n"
            f"          [cyan]{upload.method} {upload.path}[/] ({upload.standard}): {read}"
            f"{'; '.join(done)} [dim]({seconds:.1f} s)[/]")


def _finalise(port: Port, upload: simulate.Upload, receipts: list[dict[str, Any]],
              timeout: float = VIEW_TIMEOUT) -> list[dict[str, Any]]:
    """Wait until every operation of ``upload`` is final; their final receipts."""
    org = simulate.PARTIES[upload.party]
    return [port.final(org, r["id"], timeout) for r in receipts]


def _eventually(probe: Callable[[], T | None], what: str,
                timeout: float = VIEW_TIMEOUT) -> T | None:
    """``probe()`` once it is truthy, or its last value after ``timeout`` seconds."""
    last: list[T | None] = [None]

    def attempt() -> T | None:
        last[0] = probe()
        return last[0]

    try:
        return wait_for(attempt, timeout, interval=0.3, what=what)
    except DevnetError:
        return last[0]


def _numbers(view: Any) -> set[str]:
    return {c["number"] for c in view.get("containers", [])} if isinstance(view, dict) else set()


def _view_table(title: str, view: dict[str, Any]) -> Table:
    """The containers of a shipment view (as ``GET /v1/track/{reference}`` answered)."""
    timeline = {e["eventId"]: e for e in view.get("timeline", [])}
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("container", "status", "since", "events", "latest event (publisher)"):
        table.add_column(column, no_wrap=True)
    for c in view.get("containers", []):
        last = timeline.get(c["events"][-1]) if c.get("events") else None
        table.add_row(
            c["number"], c.get("status") or "-", c.get("statusTime") or "-",
            str(len(c.get("events", []))),
            f"{last['type']} ({last['publisherName']})" if last else "-",
        )
    vessel = view.get("vessel") or {}
    if vessel:
        eta = vessel.get("eta") or {}
        table.caption = (f"vessel {vessel.get('name')} (IMO {vessel.get('imo')})"
                         + (f", arrival {eta['time']} [{eta['classifier']}]" if eta else ""))
    return table


def _access_table(logs: dict[str, list[dict[str, Any]]]) -> Table:
    table = Table(title="who read whose data (GET /v1/access-log of each owner)",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("owner", "reader", "via", "records read", "last read"):
        table.add_column(column, no_wrap=True)
    for owner, entries in logs.items():
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for e in entries:
            grouped.setdefault((e["readerName"], e["via"]), []).append(e)
        for (reader, via), rows in sorted(grouped.items()):
            table.add_row(owner, reader, via, str(len({r["eventId"] for r in rows})),
                          max(r["time"] for r in rows))
    return table


# -- the chain side ----------------------------------------------------------------------------
def _header_from_rpc(block: dict[str, Any]) -> Any:
    """Rebuild a py-evm header from its JSON-RPC form (to recompute the seal digest)."""

    def b(name: str) -> bytes:
        return bytes.fromhex(block[name][2:])

    def n(name: str) -> int:
        return int(block[name], 16)

    fields: dict[str, Any] = {  # py-evm's header takes its own NewType'd bytes and ints
        "parent_hash": b("parentHash"),
        "uncles_hash": b("sha3Uncles"),
        "coinbase": b("miner"),
        "state_root": b("stateRoot"),
        "transaction_root": b("transactionsRoot"),
        "receipt_root": b("receiptsRoot"),
        "bloom": int.from_bytes(b("logsBloom"), "big"),
        "difficulty": n("difficulty"),
        "block_number": n("number"),
        "gas_limit": n("gasLimit"),
        "gas_used": n("gasUsed"),
        "timestamp": n("timestamp"),
        "extra_data": b("extraData"),
        "mix_hash": b("mixHash"),
        "nonce": b("nonce"),
        "base_fee_per_gas": n("baseFeePerGas"),
        "withdrawals_root": b("withdrawalsRoot"),
        "blob_gas_used": n("blobGasUsed"),
        "excess_blob_gas": n("excessBlobGas"),
        "parent_beacon_block_root": b("parentBeaconBlockRoot"),
        "requests_hash": b("requestsHash"),
    }
    header = QbftBlockHeader(**fields)
    if "0x" + header.hash.hex() != block["hash"]:
        raise DemoError(f"block {block['number']}: header fields do not hash to {block['hash']}")
    return header


def sealers(node: NodeSpec, number: int) -> tuple[bytes, ...]:
    """The validators whose commit seals on block ``number`` check out (as ``node`` serves it).

    The seals of block N must come from a quorum of the validators listed in header N - 1
    (Besu's QBFT rule); :func:`consensus.extradata.verify_seals` raises if they do not.
    """
    block = rpc_call(node, "eth_getBlockByNumber", [hex(number), False])
    parent = rpc_call(node, "eth_getBlockByHash", [block["parentHash"], False])
    allowed = extradata.decode(bytes.fromhex(parent["extraData"][2:])).validators
    seals = extradata.decode(bytes.fromhex(block["extraData"][2:])).seals
    return extradata.verify_seals(extradata.commit_digest(_header_from_rpc(block)), seals, allowed)


# -- the demo ----------------------------------------------------------------------------------
@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Stop` (so every process is stopped, as on Ctrl-C)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM (stopping is bounded: SIGKILL follows a short grace)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(datadir: str | None, *, once: bool = False, interval: float = 3.0,
             duration: float = 0.0, gateway_port: int | None = None) -> int:
    """Run the demo port; return the exit status (0: every check passed).

    Parameters
    ----------
    datadir : str, optional
        Folder of the port (devnet and gateway data); reused if it holds one. Default: a fresh
        temporary folder.
    once : bool
        Play the story and one tick of the live feed, check, stop (no live port).
    interval : float
        Seconds between two ticks of the live feed.
    duration : float
        Stop the live port after this many seconds (0: run until Ctrl-C).
    gateway_port : int, optional
        The gateway's HTTP port (0: any free one); default 8080 if free.
    """
    console = Console(width=None if sys.stdout.isatty() else 150)
    checks = Checks(console)
    root = Path(datadir) if datadir else Path(tempfile.mkdtemp(prefix="portledger-demo-"))
    console.rule("[bold]PortLedger demo port — four validators, an observer, the gateway and a "
                 "SIMULATED vessel call")
    port: Port | None = None
    observer: NodeSpec | None = None
    receivers: dict[str, WebhookReceiver] = {}
    mail: MailServer | None = None
    authority: AuthorityServer | None = None
    stopped = False  # SIGTERM asked the demo to stop: it stops every process, that is all
    with _sigterm_stops():
        try:
            console.print(f"creating the port in {root} (devnet, gateway, demo accounts)…")
            with contextlib.redirect_stdout(io.StringIO()):  # one "initialised" line per node
                mail = MailServer(root / "mail")
                authority = AuthorityServer(root / "authority")
                port = Port(root, gateway_port=_gateway_port(gateway_port),
                            gateway_options=_gateway_options(mail, authority))
                _bind_customs(port)
            layout = port.layout
            observer = layout.observers[0] if layout.observers else layout.validators[0]
            port.devnet.start()
            port.devnet.wait_ready(timeout=120)
            port.devnet.wait_for(
                lambda: all(len(s.peers or []) >= len(layout.validators)
                            for s in port.devnet.statuses()[: len(layout.validators)]),
                60, what="every validator connected to its peers",
            )
            console.print(status_table(port.devnet.statuses(), title="the network"))
            mail.start()
            authority.start()
            console.print(f"a SIMULATED customs authority service (devnet.authority, its own "
                          f"process) on {authority.url} answers the declarations")
            console.print(f"a SIMULATED mail server (aiosmtpd) on 127.0.0.1:{mail.port} takes "
                          f"the alert e-mails into {mail.maildir}")
            port.gateway.start()
            port.gateway.wait_ready(timeout=120)
            console.print(f"the gateway: {port.gateway.url} (its own process, talking to the "
                          f"observer {observer.rpc_url} first, the validators for failover)")
            call = simulate.vessel_call(int(time.time()) % 1_000_000, int(time.time()))
            receivers = _alert_channels(port)
            blocks = _play_story(port, call, console, checks)
            _who_sees_what(port, call, console, checks)
            _port_systems(port, observer, call, console, checks)
            _alerts(port, call, console, checks, receivers, mail)
            _land_leg(port, call, console, checks)
            _on_chain(port, observer, call, blocks, console, checks)
            _declarations(port, observer, call, console, checks)
            if once:
                _live(port, call, console, checks, interval=0.0, ticks=1)
            else:
                _show_live_port(port, call, console)
                _live(port, call, console, checks, interval=interval, duration=duration)
            port.devnet.wait_for(lambda: len(set(port.devnet.heads())) == 1, 30,
                                 what="every node at the same head")
            heads = port.devnet.heads()
            console.print(status_table(port.devnet.statuses(), title="the network at the end"))
            checks.check("every node has the same head", len(set(heads)) == 1 and heads[0] is not None,
                         f"#{heads[0][0]} {heads[0][1][:18]}…" if heads[0] else "")
        except _Stop:
            stopped = True
        except KeyboardInterrupt:
            checks.check("the demo ran to its end", False, "interrupted")
        except Exception as exc:  # report, stop every process, exit non-zero
            checks.check("the demo ran to its end", False, f"{type(exc).__name__}: {exc}")
            if port is not None and not port.gateway.running:
                console.print(port.gateway.log_tail(2000))
        finally:
            for receiver in receivers.values():
                receiver.close()
            if mail is not None:
                mail.stop()
            if authority is not None:
                authority.stop()
            console.print("stopping the gateway and the nodes…")
            if port is not None:
                with _signals_ignored():  # a second Ctrl-C must not leave processes behind
                    port.stop()
        if not stopped and observer is not None and (observer.datadir / "genesis.json").exists():
            try:
                _replay(observer, console, checks)
            except _Stop:
                stopped = True
    if stopped:
        # Stopping on request is no failure; a check that already failed still is.
        passed = all(ok for _, ok, _ in checks.results)
        console.rule("[bold]demo stopped by SIGTERM; every process stopped" if passed
                     else "[bold red]demo FAILED (then stopped by SIGTERM; every process stopped)")
        return 0 if passed else 1
    console.rule("[bold green]demo OK" if checks.ok else "[bold red]demo FAILED")
    return 0 if checks.ok else 1


def _play_story(port: Port, call: simulate.VesselCall, console: Console,
                checks: Checks) -> dict[str, list[int]]:
    """Send the story's uploads, each final before the next; blocks per step."""
    console.rule("the vessel call (SIMULATED), through the gateway's HTTP API")
    names = {o["chainOrg"]: o["name"] for o in port.gateway.credentials()["organisations"]}
    console.print("parties: " + ", ".join(f"{role} = {names[org]} (org {org})"
                                          for role, org in simulate.PARTIES.items()))
    blocks: dict[str, list[int]] = {}
    every_final = True
    for upload in feedstory.story(call, int(time.time())):
        started = time.monotonic()
        body = _post(port, upload)
        final = _finalise(port, upload, list(body["receipts"]))
        blocks[f"{upload.party} {upload.what}"] = sorted({r["block"] for r in final})
        every_final &= bool(final) and all(r["status"] == "final" for r in final)
        console.print(_played(upload, body, final, time.monotonic() - started))
    checks.check("every upload of the story accepted (202) and final on chain", every_final,
                 f"{sum(len(b) for b in blocks.values())} block(s)")
    return blocks


def _who_sees_what(port: Port, call: simulate.VesselCall, console: Console,
                   checks: Checks) -> None:
    console.rule("who sees what (GET /v1/track/{reference}, each with its own API key)")
    trader, bank = simulate.PARTIES["trader"], simulate.PARTIES["bank"]
    expected = set(call.house_containers)

    def trader_view() -> Any:
        status, view = port.track(trader, call.house)
        if status != 200 or _numbers(view) != expected:
            return None
        return view if all(c.get("status") for c in view["containers"]) else None

    view = _eventually(trader_view, "the trader's view of the house B/L")
    if view is not None:
        console.print(_view_table(f"the trader tracks house B/L {call.house}", view))
    checks.check(f"trader sees exactly {len(expected)} containers by house B/L",
                 view is not None and _numbers(view) == expected
                 and call.containers[-1] not in json.dumps(view),
                 ", ".join(sorted(_numbers(view))) if view else "no view")
    statuses = {c.get("status") for c in view["containers"]} if view else set()
    checks.check("the trader's containers are available for pick-up",
                 statuses == {"available-for-pick-up"}, ", ".join(map(str, sorted(statuses))))

    def vessel_view() -> Any:
        status, body = port.track(trader, call.vessel_imo)
        return body if status == 200 and (body.get("vessel") or {}).get("eta") else None

    vessel = _eventually(vessel_view, "the trader's view of the vessel")
    eta = (vessel or {}).get("vessel", {}).get("eta") or {}
    checks.check("trader tracks the vessel by IMO number and sees its arrival",
                 bool(eta), f"{call.vessel_name}: {eta.get('time')} [{eta.get('classifier')}]"
                 f" from {eta.get('source')}" if eta else "no arrival")

    status, body = port.track(bank, call.master)
    blind = (status == 404 or not _numbers(body)) and not any(
        secret in json.dumps(body) for secret in (*call.containers, call.vessel_name))
    checks.check("bank sees nothing of the master B/L before the grant", blind,
                 f"HTTP {status}" + (f" {body['error']['code']}" if status == 404 else ""))

    grant = simulate.grant(call, "bank")
    _finalise(port, grant, _send(port, grant))
    console.print(f"[bold]{grant.party:>9}[/] {grant.what}\n"
                  f"          [cyan]{grant.method} {grant.path}[/] ({grant.standard}): final")

    def bank_view() -> Any:
        status, view = port.track(bank, call.master)
        return view if status == 200 and _numbers(view) == set(call.containers) else None

    view = _eventually(bank_view, "the bank's view after the grant")
    if view is not None:
        console.print(_view_table(f"the bank tracks master B/L {call.master} (granted)", view))
    checks.check(f"bank sees the {len(call.containers)} containers after the grant",
                 view is not None, ", ".join(sorted(_numbers(view))) if view else "no view")

    owners = {"carrier": {bank}, "terminal": {trader, bank}, "forwarder": {trader}}
    # only this call's documents and containers (a reused port's log holds earlier runs too)
    ours = {"0x" + subject_key(r).hex() for r in (call.master, call.house, *call.containers)}

    def logs() -> dict[str, list[dict[str, Any]]] | None:
        found = {}
        for owner, readers in owners.items():
            status, body, _ = port.clients[simulate.PARTIES[owner]].get("/v1/access-log")
            entries = [e for e in (body.get("entries", []) if status == 200 else [])
                       if e["subject"] in ours]
            if not readers <= {e["reader"] for e in entries}:
                return None
            found[owner] = entries
        return found

    seen = _eventually(logs, "the owners' access logs")
    if seen is not None:
        console.print(_access_table(seen))
    for owner, readers in owners.items():
        names = " and the ".join(r for r, org in simulate.PARTIES.items() if org in readers)
        got = {e["readerName"] for e in (seen or {}).get(owner, [])}
        checks.check(f"{owner}'s access log lists the {names}", seen is not None,
                     ", ".join(sorted(got)) or "no entries")


def _vessel_of(port: Port, org: int, reference: str) -> dict[str, Any]:
    """The ``vessel`` of ``org``'s view of ``reference`` (empty if none)."""
    status, view = port.track(org, reference)
    vessel = view.get("vessel") if status == 200 and isinstance(view, dict) else None
    return vessel if isinstance(vessel, dict) else {}


def _ais_derived(vessel: dict[str, Any]) -> dict[str, Any]:
    return next((e for e in vessel.get("etas") or [] if e.get("source") == "AIS-derived"), {})


def _gateway_options(mail: MailServer, authority: AuthorityServer) -> dict[str, Any]:
    """The demo gateway's settings beyond the devnet's: the webhook receiver is on loopback,
    alert e-mail goes to the SIMULATED mail server, declarations to the SIMULATED authority
    service with an EXAMPLE exchange rate (the customs organisation's gateway id is added by
    :func:`_bind_customs` once the demo accounts exist)."""
    return {"extra": {
        "subscriptions": {"allow_private_callbacks": True},
        "alerts": {"smtp": {"host": "127.0.0.1", "port": mail.port,
                            "from": "PortLedger alerts (SIMULATED demo) <alerts@portledger.demo>"}},
        "declarations": {"authority_url": authority.url, "poll_seconds": 1.0,
                         "rates": [{**EXAMPLE_RATE, "date": iso_time(int(time.time()))[:10]}]},
    }}


class WebhookReceiver:
    """The forwarder's SIMULATED system receiving alert webhooks on loopback: it answers 204 and
    keeps each body whose ``Notification-Signature`` checks out with the shared secret."""

    def __init__(self) -> None:
        self.secret = secrets.token_bytes(32)
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Notification-Signature") == signature(receiver.secret,
                                                                           body):
                    items = json.loads(body)
                    receiver.received += items if isinstance(items, list) else [items]
                else:
                    receiver.bad_signatures += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: The example storage tariff the terminal publishes in the demo (it says it is an example).
EXAMPLE_TARIFF = Path(__file__).resolve().parents[1] / "examples" / "tariffs" / \
    "example_hk_storage.json"


def _alerts_of(port: Port, org: int, refs: set[str]) -> list[dict[str, Any]]:
    """``org``'s alerts (open and resolved) about any of ``refs``."""
    status, body, _ = port.clients[org].get("/v1/alerts?limit=200")
    if status != 200:
        raise DemoError(f"GET /v1/alerts as organisation {org}: {status} {body}")
    return [a for a in body.get("alerts", []) if a["subject"]["value"] in refs]


def _figures(alert: dict[str, Any]) -> str:
    skip = {"kind", "subject", "state", "episode", "opened", "updated", "resolved", "sources",
            "id", "read", "unread", "organisation", "changes"}
    return ", ".join(f"{k} {v}" for k, v in alert.items()
                     if k not in skip and not isinstance(v, dict | list))[:150]


def _uncollected(port: Port, call: simulate.VesselCall, checks: Checks,
                 receiver: WebhookReceiver, mail: MailServer) -> list[dict[str, Any]]:
    """A SIMULATED container of an earlier call, available for pick-up 8 days ago and never
    collected: the trader, following it, gets a not-picked-up alert with the HK$ accrued under
    the terminal's (example) tariff."""
    trader = simulate.PARTIES["trader"]
    box = simulate.container_number("PCOU", (call.serial * 7 + 13) % 1_000_000)
    status, body, _ = port.clients[trader].post(
        "/v1/alerts/follows", {"references": [{"kind": "container", "value": box}]})
    if status not in (200, 201):
        raise DemoError(f"the trader could not follow container {box}: {status} {body}")
    available = int(time.time()) - 8 * 86_400
    upload = simulate.Upload("terminal", "POST", "/v1/events", {"events": [
        simulate.canonical_item(f"sim-avpu-old-{box}", CanonicalEvent(
            "TERMINAL.AVPU", "ACT", available, Reference("container", box), simulate.POD,
            related=(Reference("mbl", call.master),),
            details={"simulated": True, "isoType": "42G1"},
            visibility=Visibility("reference")))]},
        f"container {box} available for pick-up since {iso_time(available)}",
        "PortLedger canonical")
    _finalise(port, upload, list(_post(port, upload)["receipts"]))

    def overdue() -> list[dict[str, Any]] | None:
        found = [a for a in _alerts_of(port, trader, {box}) if a["kind"] == "not-picked-up"]
        return found or None

    found = _eventually(overdue, "the trader's not-picked-up alert") or []
    checks.check(f"alerts: the trader, following uncollected container {box}, gets one "
                 "not-picked-up episode with HK$ accrued and per day", len(found) == 1
                 and bool(found[0].get("accrued")), _figures(found[0]) if found else "none")
    _delivered(checks, f"the storage charges of container {box}", "trader", found, receiver,
               mail, "not-picked-up", box)
    return found


def _late_vessel(port: Port, call: simulate.VesselCall, checks: Checks,
                 receiver: WebhookReceiver, mail: MailServer) -> list[dict[str, Any]]:
    """A SIMULATED later vessel whose carrier moves its ETA 30 h back: the trader, following the
    vessel, gets a vessel-delay alert naming the source that moved."""
    trader = simulate.PARTIES["trader"]
    late = dataclasses.replace(
        simulate.vessel_call((call.serial + 1) % 1_000_000, int(time.time())),
        vessel_imo=simulate.imo_number(22_000 + call.serial % 1000),
        vessel_name="EASTERN PROMISE (SIMULATED)")
    status, body, _ = port.clients[trader].post(
        "/v1/alerts/follows", {"references": [{"kind": "vessel", "value": late.vessel_imo}]})
    if status not in (200, 201):
        raise DemoError(f"the trader could not follow vessel {late.vessel_imo}: {status} {body}")
    rng = random.Random(call.serial ^ 0xDE1A)
    now = int(time.time())
    first = now + 2 * 86_400
    for eta, remark in ((first, "ETA at departure"), (first + 30 * 3600, "ETA after weather")):
        upload = simulate.Upload(
            "carrier", "POST", "/v2/events?visibility=reference",
            [simulate.transport_event(late, "ARRI", "EST", eta, int(time.time()),
                                      simulate.event_id(rng), remark=remark)],
            f"{late.vessel_name}: {remark} {iso_time(eta)}", "DCSA T&T 2.2")
        _finalise(port, upload, list(_post(port, upload)["receipts"]))

    def delayed() -> list[dict[str, Any]] | None:
        found = [a for a in _alerts_of(port, trader, {late.vessel_imo})
                 if a["kind"] == "vessel-delay"]
        return found or None

    found = _eventually(delayed, "the trader's vessel-delay alert") or []
    checks.check(f"alerts: the trader, following vessel {late.vessel_imo}, gets one "
                 "vessel-delay episode (ETA 30 h later, DCSA T&T 2.2)", len(found) == 1,
                 _figures(found[0]) if found else "none")

    _delivered(checks, f"the delay of vessel {late.vessel_imo}", "trader", found, receiver,
               mail, "vessel-delay", late.vessel_imo)
    return found


#: The trader's shared alert mailbox (its API key's preferences name it).
TRADER_MAILBOX = "ops@sino-trading.demo"

#: What each party's own system and mailbox take (set before the story, so they hear every
#: transition): the forwarder the reefer's excursion, the trader its delays and storage.
ALERT_CHANNELS = {
    "forwarder": (("reefer-excursion", "customs-hold"), "ops@forwarder.demo"),
    "trader": (("vessel-delay", "eta-changed", "not-picked-up", "free-time-ending",
                "customs-hold"), TRADER_MAILBOX),
}


def _alert_channels(port: Port) -> dict[str, WebhookReceiver]:
    """The forwarder's and the trader's systems register alert webhooks (HMAC-signed, on
    loopback), and their API keys' alert preferences send the same kinds to their shared
    mailboxes (e-mail through the SIMULATED mail server) besides the inbox."""
    receivers: dict[str, WebhookReceiver] = {}
    try:
        for who, (kinds, mailbox) in ALERT_CHANNELS.items():
            client = port.clients[simulate.PARTIES[who]]
            receiver = receivers[who] = WebhookReceiver()
            status, body, _ = client.post("/v1/alerts/webhooks", {
                "callbackUrl": receiver.url,
                "secret": base64.b64encode(receiver.secret).decode(), "kinds": list(kinds)})
            if status != 201:
                raise DemoError(f"the {who} could not register its alert webhook: {status} "
                                f"{body}")
            status, body, _ = client.request("PUT", "/v1/alerts/preferences", {
                "channels": ["inbox", "email"], "email": mailbox, "kinds": list(kinds)})
            if status != 200:
                raise DemoError(f"the {who} could not set its alert preferences: {status} "
                                f"{body}")
    except BaseException:
        for receiver in receivers.values():
            receiver.close()
        raise
    return receivers


def _delivered(checks: Checks, what: str, who: str, alerts: list[dict[str, Any]],
               receiver: WebhookReceiver, mail: MailServer, kind: str, subject: str) -> None:
    """Check that one alert episode reached ``who`` by all three channels: its inbox
    (``alerts``), its system's webhook (signature checked) and its mailbox."""
    mailbox = ALERT_CHANNELS[who][1]

    def hooked() -> list[dict[str, Any]] | None:
        found = [a for a in receiver.received if a.get("kind") == kind
                 and a.get("subject", {}).get("value") == subject]
        return found or None

    def mailed() -> list[tuple[str, str, str]] | None:
        found = [m for m in mail.messages() if mailbox in m[0] and subject in m[1] + m[2]]
        return found or None

    pushed = _eventually(hooked, f"the {who}'s {kind} webhook") or []
    letters = _eventually(mailed, f"the {who}'s {kind} e-mail") or []
    checks.check(f"alerts: {what} reached the {who} by inbox, webhook and e-mail",
                 len([a for a in alerts if a["kind"] == kind]) == 1 and bool(pushed)
                 and bool(letters) and not receiver.bad_signatures,
                 f"inbox {len([a for a in alerts if a['kind'] == kind])} episode(s), webhook "
                 f"{len(pushed)} "
                 f"({', '.join(sorted({str(a.get('change')) for a in pushed}))}), e-mail to "
                 f"{mailbox}: {letters[0][1][:70] if letters else 'none'}")


def _alerts(port: Port, call: simulate.VesselCall, console: Console, checks: Checks,
            receivers: dict[str, WebhookReceiver], mail: MailServer) -> None:
    """Alerts before it costs money: what the engine raised for whom, and the storage meter."""
    console.rule("alerts (GET /v1/alerts, each party its own inbox) and the HK$ storage meter")
    terminal, carrier = simulate.PARTIES["terminal"], simulate.PARTIES["carrier"]
    forwarder, trader = simulate.PARTIES["forwarder"], simulate.PARTIES["trader"]
    competitor = simulate.PARTIES["competitor"]
    tariff = json.loads(EXAMPLE_TARIFF.read_text())
    status, body, _ = port.clients[terminal].request(
        "PUT", f"/v1/alerts/tariffs/terminal/{terminal}", tariff)
    checks.check("the terminal publishes its storage tariff (an EXAMPLE in HK$)",
                 status in (200, 201), f"HTTP {status}: {tariff['label'][:40]}…"
                 if status in (200, 201) else f"HTTP {status} {body}")
    ours = {*call.containers, call.master, call.house, feedstory.declaration_number(call)}
    reefer_box = call.containers[0]

    def excursion() -> list[dict[str, Any]] | None:
        found = [a for a in _alerts_of(port, forwarder, ours) if a["kind"] == "reefer-excursion"]
        return found or None

    def customs_episodes() -> list[dict[str, Any]] | None:
        found = [a for a in _alerts_of(port, trader, ours) if a["kind"] == "customs-hold"]
        return found if found and all(a["state"] == "resolved" for a in found) else None

    seen = _eventually(excursion, "the forwarder's reefer excursion alert") or []
    table = Table(title="alert episodes", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("who", "kind", "subject", "state", "figures"):
        table.add_column(column)
    for alert in seen:
        table.add_row("forwarder", alert["kind"], alert["subject"]["value"], alert["state"],
                      _figures(alert))
    checks.check("alerts: the forwarder gets exactly one reefer-excursion episode for "
                 f"{reefer_box}", len(seen) == 1 and seen[0]["subject"]["value"] == reefer_box,
                 _figures(seen[0]) if seen else "none")
    customs = _eventually(customs_episodes, "the trader's customs hold, resolved") or []
    for alert in customs:
        table.add_row("trader", alert["kind"], alert["subject"]["value"], alert["state"],
                      _figures(alert))
    checks.check("alerts: the trader's customs-hold episodes opened and are resolved by the "
                 "release", bool(customs), f"{len(customs)} episode(s)")

    def pushed() -> list[dict[str, Any]] | None:
        found = [a for a in receiver.received if a.get("kind") == "reefer-excursion"
                 and a.get("subject", {}).get("value") == reefer_box]
        return found or None

    receiver = receivers["forwarder"]
    hooked = _eventually(pushed, "the forwarder's webhook") or []
    checks.check("alerts: the forwarder's system received the excursion by webhook "
                 "(HMAC-SHA256 signature checked)", bool(hooked) and not receiver.bad_signatures,
                 f"{len(receiver.received)} delivered, changes "
                 f"{', '.join(sorted({str(a.get('change')) for a in hooked}))}, "
                 f"{receiver.bad_signatures} bad signature(s)")
    _delivered(checks, f"the excursion of {reefer_box}", "forwarder", seen, receiver, mail,
               "reefer-excursion", reefer_box)
    owner = [a for a in _alerts_of(port, carrier, ours) if a["kind"] == "reefer-excursion"]
    checks.check("alerts: the carrier (the readings' owner) gets the same excursion once",
                 len(owner) == 1, f"{len(owner)} episode(s)")
    strangers = _alerts_of(port, competitor, ours)
    checks.check("alerts: the competing terminal gets none about this shipment",
                 not strangers, f"{len(strangers)} alert(s)")
    uncollected = _uncollected(port, call, checks, receivers["trader"], mail)
    for alert in uncollected:
        table.add_row("trader", alert["kind"], alert["subject"]["value"], alert["state"],
                      _figures(alert))
    late = _late_vessel(port, call, checks, receivers["trader"], mail)
    for alert in late:
        table.add_row("trader", alert["kind"], alert["subject"]["value"], alert["state"],
                      _figures(alert))
    theirs = {a["subject"]["value"] for a in uncollected + late}
    strangers = _alerts_of(port, competitor, theirs)
    checks.check("alerts: the competing terminal gets none about the uncollected box or the "
                 "late vessel either", bool(theirs) and not strangers,
                 f"{len(strangers)} alert(s) about {', '.join(sorted(theirs))}")
    console.print(table)
    status, meter, _ = port.clients[trader].get(f"/v1/alerts/storage/{call.containers[0]}")
    shown = ", ".join(f"{k} {meter[k]}" for k in ("daysInYard", "days_in_yard", "lastFreeDay",
                                                  "last_free_day", "accrued", "per_day",
                                                  "perDay", "currency")
                      if isinstance(meter, dict) and k in meter)
    checks.check(f"storage meter: the trader sees {call.containers[0]}'s days in yard, last "
                 "free day and HK$ accrued", status == 200, shown or f"HTTP {status} {meter}")


# -- the land leg ------------------------------------------------------------------------------
#: Where the SIMULATED truck drives: from the terminal's gate (Kwai Tsing) to the warehouse
#: (Tsuen Wan), WGS84 — a straight line sampled every :data:`TRUCK_EVERY` seconds.
TRUCK_FROM, TRUCK_TO = (22.3440, 114.1180), (22.3715, 114.1130)
TRUCK_POSITIONS, TRUCK_EVERY = 12, 20
#: The SIMULATED driver (a phone number of the Hong Kong mobile range, fictitious).
DEMO_DRIVER = ("Chan Tai Man (SIMULATED)", "+85290000001")


def _warehouse_party() -> int:
    """The demo warehouse's Consortium id (genesis order + 1, as :data:`simulate.PARTIES`)."""
    return next(i + 1 for i, (_, roles) in enumerate(DEMO_ORGANISATIONS) if "warehouse" in roles)


def _driver_client(port: Port, phone: str, code: str) -> tuple[GatewayClient, dict[str, Any]]:
    """A driver's phone: signs in with the one-time code; the session cookie and CSRF token go
    with every request after."""
    status, body, headers = port.anonymous.post("/v1/land/driver-session",
                                                {"phone": phone, "code": code})
    if status != 200:
        raise DemoError(f"the driver could not sign in: {status} {body}")
    cookie = next((v.split(";", 1)[0] for k, v in headers.items() if k.lower() == "set-cookie"),
                  "")
    client = GatewayClient(port.gateway.url)
    session = {"Cookie": cookie, "X-CSRF-Token": body["csrfToken"]}
    original = client.request

    def request(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return original(method, path, body, headers={**session, **kw.pop("headers", {})}, **kw)

    client.request = request  # type: ignore[method-assign]
    return client, body


def _land_leg(port: Port, call: simulate.VesselCall, console: Console, checks: Checks) -> None:
    """The land leg: the haulier plans a job for one of the call's released boxes, adds a driver
    who signs in with a one-time code, the truck's SIMULATED positions go through the API, the
    terminal gates the number out with the driver's signed token (the same token again is refused),
    the warehouse receives it with its seal as expected; the custody chain, each step signed on
    chain by its party."""
    console.rule("the land leg (/v1/land): a job, a driver, a truck from the terminal to the "
                 "warehouse, the gate-out and the receipt with the signed QR token")
    haulier, terminal = simulate.PARTIES["haulier"], simulate.PARTIES["terminal"]
    warehouse, trader = _warehouse_party(), simulate.PARTIES["trader"]
    number = call.containers[1]  # released (customs, AVPU); the last one is gated out by CODECO
    seal = f"SIMSEAL{call.serial % 100_000:05d}"
    now = int(time.time())
    client = port.clients[haulier]
    status, made, _ = client.post("/v1/land/drivers", {"name": DEMO_DRIVER[0],
                                                       "phone": DEMO_DRIVER[1]})
    if status == 409:  # a reused port folder: the driver is there already
        _, listed, _ = client.get("/v1/land/drivers")
        made = next(d for d in listed["drivers"] if d["phone"] == DEMO_DRIVER[1])
    elif status != 201:
        raise DemoError(f"the haulier could not add its driver: {status} {made}")
    status, job, _ = client.post("/v1/land/jobs", {
        "references": [{"kind": "container", "value": number}],
        "pickup": {"terminal": terminal, "location": simulate.POD, "facility": "CT9"},
        "delivery": {"warehouse": warehouse, "location": simulate.POD,
                     "address": "1 Tsuen Wan Road (SIMULATED)"},
        "window": {"from": iso_time(now - 1800), "to": iso_time(now + 4 * 3600)},
        "vehicle": "SIM 1234", "driver": made["id"], "seals": {number: [seal]},
        "share": [trader]})  # the consignee follows the truck (it reads the box by reference)
    rights = (job or {}).get("rights", []) if status == 201 else []
    checks.check(f"land leg: the haulier plans a job for {number} with a valid pick-up right",
                 status == 201 and [r["valid"] for r in rights] == [True],
                 f"job {job.get('id')}, right {rights[0]['basis']}" if rights
                 else f"HTTP {status} {job}")
    if status != 201:
        return
    job_id = job["id"]
    status, code, _ = client.post(f"/v1/land/drivers/{made['id']}/code")
    if status != 201:
        raise DemoError(f"no sign-in code for the driver: {status} {code}")
    driver, session = _driver_client(port, DEMO_DRIVER[1], code["code"])
    status, mine, _ = driver.get("/v1/land/jobs")
    ids = [j["id"] for j in (mine or {}).get("jobs", [])] if status == 200 else []
    checks.check("land leg: the driver signs in with a one-time code and sees their job",
                 job_id in ids, f"{session['driver']['name']}, {len(ids)} job(s) assigned")
    status, token, _ = driver.get(f"/v1/land/jobs/{job_id}/token")
    if status != 200:
        raise DemoError(f"the driver could not read the job's token: {status} {token}")
    text = token["token"]
    gate_time = now - TRUCK_POSITIONS * TRUCK_EVERY - 60
    status, gated, _ = port.clients[terminal].post("/v1/land/gate-out",
                                                   {"token": text, "time": iso_time(gate_time)})
    checks.check(f"land leg: the terminal gates {number} out with the driver's signed token "
                 f"({len(text)} characters)", status == 201,
                 f"job {gated.get('state')}, right {gated['containers'][0]['right']['basis']}"
                 if status == 201 else f"HTTP {status} {gated}")
    status, again, _ = port.clients[terminal].post("/v1/land/gate-out", {"token": text})
    code_again = (again or {}).get("error", {}).get("code") if isinstance(again, dict) else None
    checks.check("land leg: the same token again at the gate is refused as a replay",
                 status == 409 and code_again == "token-replayed", f"HTTP {status} {code_again}")
    track = []
    for i in range(TRUCK_POSITIONS):
        f = i / (TRUCK_POSITIONS - 1)
        track.append({"time": iso_time(gate_time + 60 + i * TRUCK_EVERY),
                      "lat": round(TRUCK_FROM[0] + f * (TRUCK_TO[0] - TRUCK_FROM[0]), 6),
                      "lon": round(TRUCK_FROM[1] + f * (TRUCK_TO[1] - TRUCK_FROM[1]), 6),
                      "speed": 0.0 if i in (0, TRUCK_POSITIONS - 1) else 38.0})
    status, shared, _ = driver.post(f"/v1/land/jobs/{job_id}/positions", {"positions": track})
    accepted = (shared or {}).get("accepted") if status == 202 else None
    checks.check(f"land leg: the driver's phone posts {TRUCK_POSITIONS} SIMULATED truck "
                 "positions from the terminal to the warehouse", status == 202
                 and accepted == TRUCK_POSITIONS and not shared.get("refused"),
                 f"{accepted} accepted, {len((shared or {}).get('refused') or [])} refused"
                 if status == 202 else f"HTTP {status} {shared}")
    status, seen, _ = port.clients[trader].get(f"/v1/land/jobs/{job_id}/positions")
    latest: dict[str, Any] | None = (seen or {}).get("latest") if status == 200 else None
    checks.check(f"land leg: the trader (reading {number}) sees the truck's latest position",
                 latest is not None and abs(float(latest["lat"]) - TRUCK_TO[0]) < 1e-4,
                 f"{latest['lat']}, {latest['lon']} at {latest['time']}" if latest
                 else f"HTTP {status} {seen}")
    status, received, _ = port.clients[warehouse].post("/v1/land/receipts", {
        "token": text, "seals": {number: [seal.lower()]},
        "condition": "Delivered in good order (SIMULATED)"})
    seals = (received or {}).get("seals", []) if status == 201 else []
    checks.check(f"land leg: the warehouse receives {number} with the token, its seal as expected",
                 status == 201 and [s["match"] for s in seals] == [True]
                 and received.get("mismatch") is False,
                 f"seal {seal} found, job {received.get('state')}" if status == 201
                 else f"HTTP {status} {received}")

    def on_chain() -> list[dict[str, Any]] | None:
        status, body, _ = client.get(f"/v1/land/jobs/{job_id}/custody")
        if status != 200:
            return None
        steps: list[dict[str, Any]] = body["containers"][0]["steps"]
        # each step and its details (a transaction of their own, so maybe a later block)
        done = {s["step"] for s in steps if s["status"] == "on-chain" and s.get("job") == job_id
                and s.get("detailSigned") is not None}
        return steps if {"gate-out", "warehouse-receipt"} <= done else None

    steps = _eventually(on_chain, "the custody chain on chain") or []
    table = Table(title=f"custody chain of {number} (job {job_id}), as the haulier reads it",
                  box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("step", "signed by", "time", "block", "transaction", "details (parties)"):
        table.add_column(column)
    for step in steps:
        signed = step.get("signed") or {}
        table.add_row(step["step"], step["party"]["name"], step["time"],
                      str(signed.get("block", "—")), str(signed.get("txHash", "—"))[:18] + "…",
                      _custody_details(step.get("details")))
    console.print(table)
    # the details (vehicle, token nonce, seals, condition) are the job's parties' only: the
    # haulier reads them; the trader, following the shared job, reads the public steps
    status, shown, _ = port.clients[trader].get(f"/v1/land/jobs/{job_id}/custody")
    theirs = shown["containers"][0]["steps"] if status == 200 else []
    ours = {s["step"]: s.get("details") or {} for s in steps}
    checks.check("land leg: the gate-out's and receipt's details are the job's parties' only",
                 ours.get("gate-out", {}).get("vehicle") == "SIM1234"
                 and ours.get("warehouse-receipt", {}).get("sealsMatch") is True
                 and bool(theirs) and all(s.get("details") is None for s in theirs),
                 f"the haulier reads vehicle {ours.get('gate-out', {}).get('vehicle')}; the "
                 f"trader reads {len(theirs)} step(s), "
                 f"{sum(s.get('details') is not None for s in theirs)} with details"
                 if status == 200 else f"HTTP {status} {shown}")
    kinds = [s["step"] for s in steps]
    ordered = [k for k in kinds if k in ("terminal-release", "gate-out", "warehouse-receipt")]
    checks.check(f"land leg: the custody chain of {number} — terminal release, gate-out, receipt, "
                 "each signed on chain by its party", ordered[-3:] == [
                     "terminal-release", "gate-out", "warehouse-receipt"]
                 and all(s["status"] == "on-chain" for s in steps),
                 " → ".join(f"{s['step']} by {s['party']['name']} (block "
                            f"{(s.get('signed') or {}).get('block')})" for s in steps) or "none")


def _custody_details(details: Any) -> str:
    """A custody step's details in a few words (the vehicle, the seals' match)."""
    if not isinstance(details, dict):
        return "—"
    if "sealsMatch" in details:
        return f"seals {', '.join(details.get('sealsFound') or []) or '—'}: " + (
            "match" if details["sealsMatch"] else "no match" if details["sealsMatch"] is False
            else "unchecked")
    return f"vehicle {details.get('vehicle', '—')}"


# -- declarations ------------------------------------------------------------------------------
#: The demo's EXAMPLE exchange rate (labelled so: it is not an official rate).
EXAMPLE_RATE = {"base": "USD", "quote": "HKD", "rate": "7.8",
                "source": "EXAMPLE rate for the demo (not an official HKMA rate)"}
#: The trader's SIMULATED commercial invoice of the call's goods (CSV, the documented columns).
DEMO_INVOICE = (
    "line,description,hs_code,quantity,unit,gross_kg,net_kg,value,currency,origin,packages,"
    "package_type,hkhs_code,cn_code,model\n"
    "1,Smartphones (SIMULATED),851713,1200,PCS,900.5,780,240000,USD,CN,120,CT,85171300,"
    "8517130000,SIM-X1 128GB\n"
    "2,Wi-Fi routers (SIMULATED),851762,600,SET,720,610,36000,USD,CN,60,CT,85176200,"
    "8517620000,SIM-R7\n"
    "3,Laptops (SIMULATED),847130,300,PCS,810,690,180000,USD,CN,75,CT,84713000,8471300000,"
    "SIM-L14\n")
#: The trader's Mainland supplier (SIMULATED; the USCC is GB 32100-2015's worked example).
DEMO_SUPPLIER = {"name": "Shenzhen Phone Works (SIMULATED)",
                 "address": "1 Keji Road, Nanshan, Shenzhen", "country": "CN",
                 "uscc": "91350100M000100Y43"}


def _bind_customs(port: Port) -> int:
    """Name the customs organisation's gateway id as the Hong Kong and the China authority's
    organisation in the gateway's configuration (its id is known once the demo accounts
    exist, before the gateway starts)."""
    customs = next(o["orgId"] for o in port.gateway.credentials()["organisations"]
                   if o["chainOrg"] == simulate.PARTIES["customs"])
    path = port.gateway.config_file
    doc = json.loads(path.read_text())
    doc.setdefault("extra", {}).setdefault("declarations", {}).update(
        hk_authority_org=customs, cn_authority_org=customs)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return int(customs)


def _declaration_call(port: Port, org: int, method: str, path: str,
                      body: Any = None) -> tuple[int, Any]:
    status, answer, _ = port.clients[org].request(method, path, body)
    return status, answer


def _gateway_id(port: Port, party: int) -> int:
    """The gateway's organisation id of the Consortium member ``party``."""
    return int(next(o["orgId"] for o in port.gateway.credentials()["organisations"]
                    if o["chainOrg"] == party))


def _vessel_seen(port: Port, party: int, reference: str) -> Any:
    """The vessel of ``party``'s tracking view of ``reference`` (None while it sees none)."""
    status, view = port.track(party, reference)
    return (view or {}).get("vessel") if status == 200 else None


def _bind_authorities(port: Port, checks: Checks) -> None:
    """The customs organisation binds itself in ``Declarations.vy`` as the Hong Kong (1) and
    the China (2) authority, once (``POST /v1/declarations/authorities/{a}/bind``; asking
    again answers where the binding stands)."""
    customs = simulate.PARTIES["customs"]

    def bound() -> list[dict[str, Any]] | None:
        answers = [_declaration_call(port, customs, "POST",
                                     f"/v1/declarations/authorities/{a}/bind")
                   for a in ("hk-tdec", "cn-itsw")]
        receipts = [body["receipt"] for status, body in answers if status == 202]
        if len(receipts) < 2:
            raise DemoError(f"binding the customs authorities: {answers}")
        return receipts if all(r["status"] in ("final", "failed") for r in receipts) else None

    receipts = _eventually(bound, "the customs organisation's bindAuthority") or []
    checks.check("declarations: the customs organisation binds itself on chain as the Hong Kong "
                 "and the China authority (Declarations.bindAuthority)",
                 len(receipts) == 2 and all(r["status"] == "final" for r in receipts),
                 ", ".join(f"authority {r['id'].rsplit(':', 1)[1]} {r['status']} in block "
                           f"{r['block']}" + (f" ({r['error']})" if r["error"] else "")
                           for r in receipts) or "no answer")


def _declared_on_chain(observer: NodeSpec, key: bytes) -> tuple[Any, list[Any], list[int]]:
    """``Declarations.declarationOf`` and ``historyOf`` of the declaration ``key`` by an
    ``eth_call`` on the observer, and the blocks of its ``StatusPosted`` logs, oldest first."""
    to = abi.address("Declarations")

    def call(function: str) -> Any:
        data = rpc_call(observer, "eth_call", [
            {"to": to, "data": "0x" + abi.call_data("Declarations", function, key).hex()},
            "latest"], timeout=10)
        return abi.decode_output("Declarations", function, bytes.fromhex(data[2:]))[0]

    logs = rpc_call(observer, "eth_getLogs", [{
        "fromBlock": "0x0", "address": to,
        "topics": ["0x" + abi.event_topic("Declarations", "StatusPosted").hex(),
                   "0x" + key.hex()]}], timeout=30)
    return call("declarationOf"), list(call("historyOf")), [int(x["blockNumber"], 16)
                                                            for x in logs]


def _declarations(port: Port, observer: NodeSpec, call: simulate.VesselCall, console: Console,
                  checks: Checks) -> None:
    """One upload, three declarations: the forwarder declares for the trader (named as reader):
    its invoice for the call's master B/L becomes the Hong Kong TDEC, a ROCARS pre-declaration
    (the boxes leave by truck) and the China 报关单; it fixes a warning, approves and submits;
    the SIMULATED authorities answer with numbers and a release, which tracking shows to the
    trader; the forwarder (a declarant on chain) files them in ``Declarations.vy`` and the
    customs organisation, bound to both authorities, posts their statuses, read back from the
    chain; customs reads the declaration, the bank not."""
    console.rule("declarations: one upload, three declarations (SIMULATED authorities)")
    trader, forwarder, customs, bank = (simulate.PARTIES[p] for p in (
        "trader", "forwarder", "customs", "bank"))
    for reader in ("trader", "forwarder"):
        grant = simulate.grant(call, reader)
        _finalise(port, grant, _send(port, grant))
        console.print(f"[bold]{grant.party:>9}[/] {grant.what}")
    for party, who in ((trader, "trader"), (forwarder, "forwarder")):
        _eventually(partial(_vessel_seen, port, party, call.master),
                    f"the {who}'s view of the master B/L")
    _bind_authorities(port, checks)
    crossing = iso_time(int(time.time()) + 3 * 3600)
    status, view = _declaration_call(port, forwarder, "POST", "/v1/declarations", {
        "reference": call.master, "direction": "import", "invoice": {"csv": DEMO_INVOICE},
        "consignor": DEMO_SUPPLIER,
        "consignee": {"name": "Sino Trading Company (SIMULATED)",
                      "address": "Room 1201, 8 Harbour Road, Wan Chai", "country": "HK"},
        "readers": [_gateway_id(port, trader)],
        "crossing": {"vehicle": "SIM8888", "time": crossing, "controlPoint": "Lok Ma Chau"}})
    if status not in (200, 201):
        raise DemoError(f"POST /v1/declarations as the forwarder: {status} {view}")
    sid = view["id"]
    drafts = view["drafts"]
    tdec = next(d for d in drafts if d["authority"] == "hk-tdec")
    warnings = [(d["key"], i) for d in drafts for i in d["issues"]
                if i["severity"] == "warning"]
    errors = [(d["key"], i) for d in drafts for i in d["issues"] if i["severity"] == "error"]
    kinds = ", ".join(d["key"] for d in drafts)
    checks.check(f"declarations: the forwarder uploads {DEMO_INVOICE.count(chr(10)) - 1} invoice "
                 f"lines for the trader's master B/L {call.master} and gets the 3 drafts (TDEC, "
                 "ROCARS, China 报关单)", len(drafts) == 3 and not errors and
                 {d["authority"] for d in drafts} == {"hk-tdec", "hk-rocars", "cn-itsw"},
                 f"{kinds}; TDEC value HK${tdec['fields']['totalValueHkd']['value']}, "
                 f"declaration charge HK${tdec['fields']['charge']['value']}; "
                 f"{len(errors)} error(s), {len(warnings)} warning(s): "
                 + "; ".join(f"{i['code']} {i['path']}" for _, i in warnings + errors))
    for key, issue in warnings[:1]:
        field_path = issue["path"]
        value = "Unit 1808, 1 Kwai Fung Crescent, Kwai Chung, Hong Kong (SIMULATED)"
        status, fixed = _declaration_call(port, forwarder, "POST",
                                          f"/v1/declarations/{sid}/corrections",
                                          {"draft": key, "path": field_path, "value": value})
        left = [i for d in (fixed or {}).get("drafts", []) for i in d["issues"]
                if i["severity"] == "warning"] if status == 201 else warnings
        done = (fixed or {}).get("corrections", [{}])[-1] if status == 201 else {}
        checks.check(f"declarations: the forwarder fixes the warning {issue['code']} "
                     f"({key} {field_path}); the correction is kept with who and when",
                     status == 201 and len(left) == len(warnings) - 1 and bool(done.get("by")),
                     f"by {done.get('by')} at {iso_time(int(done.get('at') or 0))}, "
                     f"{len(left)} warning(s) left" if status == 201 else f"HTTP {status}")
    submitted = []
    for draft in drafts:
        base = f"/v1/declarations/{sid}/drafts/{quote(draft['key'], safe='')}"
        approved, _ = _declaration_call(port, forwarder, "POST", base + "/approve")
        sent, answer = _declaration_call(port, forwarder, "POST", base + "/submit")
        submitted.append((draft["key"], approved, sent, answer))
    checks.check("declarations: the forwarder approves and submits the 3 drafts",
                 all(a == 200 and s == 202 for _, a, s, _ in submitted),
                 ", ".join(f"{k} {a}/{s}" for k, a, s, _ in submitted))

    def answered() -> list[dict[str, Any]] | None:
        status, body = _declaration_call(port, forwarder, "GET",
                                         f"/v1/declarations/{sid}/submissions")
        subs = body.get("submissions", []) if status == 200 else []
        return subs if len(subs) == 3 and all(s["status"] in ("released", "rejected", "failed")
                                              for s in subs) else None

    subs = _eventually(answered, "the SIMULATED authorities' answers") or []
    numbers = {s["authority"]: s["number"] for s in subs}
    checks.check("declarations: the SIMULATED authorities return official numbers and a "
                 "release", len(subs) == 3 and all(s["status"] == "released" for s in subs),
                 ", ".join(f"{s['authority']} {s['number']} {s['status']}" for s in subs)
                 or "no answer")
    china = numbers.get("cn-itsw") or ""

    def tracked() -> dict[str, Any] | None:
        status, body = port.track(trader, china)
        found = body if status == 200 and isinstance(body, dict) else {}
        return found if (found.get("customs") or {}).get("status") == "released" else None

    shown = _eventually(tracked, f"tracking China declaration {china}") if china else None
    checks.check(f"declarations: the trader tracks China declaration {china or '?'}: released",
                 shown is not None,
                 f"released at {((shown or {}).get('customs') or {}).get('time')} by "
                 f"{((shown or {}).get('customs') or {}).get('source')}" if shown else
                 "not released in tracking")
    _history_on_chain(port, observer, sid, china, subs, console, checks)
    status, mine = _declaration_call(port, trader, "GET", f"/v1/declarations/{sid}")
    checks.check("declarations: the trader, named as reader, sees the forwarder's declaration",
                 status == 200 and len(mine.get("submissions", [])) == 3,
                 f"HTTP {status}, {len(mine.get('submissions', [])) if status == 200 else 0} "
                 "submission(s)")
    status, seen = _declaration_call(port, customs, "GET", f"/v1/declarations/{sid}")
    listed = _declaration_call(port, customs, "GET", "/v1/declarations")[1]
    checks.check("declarations: the customs organisation sees the declaration",
                 status == 200 and len(seen.get("submissions", [])) == 3 and sid in
                 [d["id"] for d in (listed or {}).get("declarations", [])],
                 f"HTTP {status}, {len(seen.get('submissions', [])) if status == 200 else 0} "
                 "submission(s)")
    hidden, _ = _declaration_call(port, bank, "GET", f"/v1/declarations/{sid}")
    bank_list = _declaration_call(port, bank, "GET", "/v1/declarations")[1]
    checks.check("declarations: the bank does not see the declaration",
                 hidden == 404 and not (bank_list or {}).get("declarations"),
                 f"GET /v1/declarations/{sid} {hidden}, listed: "
                 f"{len((bank_list or {}).get('declarations') or [])}")
    # the filing is keyed by the declaration's secret salt and tracking shows it to its readers
    # only: the bank gets what a number nobody declared gets
    unknown = china[:-9] + f"{(int(china[-9:] or 0) + 1) % 10**9:09d}" if china else ""
    bank_track, bank_view = port.track(bank, china) if china else (0, {})
    other_track, other_view = port.track(bank, unknown) if china else (0, {})
    same = ((bank_view or {}).get("error") or {}).get("code") == \
        ((other_view or {}).get("error") or {}).get("code")
    checks.check("declarations: the bank tracking the China number gets 404",
                 bank_track == 404 and other_track == 404 and same,
                 f"/v1/track/{china} {bank_track} "
                 f"{((bank_view or {}).get('error') or {}).get('code')}, as for the undeclared "
                 f"/v1/track/{unknown} {other_track}")
    console.print(f"the review page: {port.gateway.url}/declarations/{sid} (sign in as the "
                  "forwarder, or the trader to read it)")


def _history_on_chain(port: Port, observer: NodeSpec, sid: int, china: str,
                      subs: list[dict[str, Any]], console: Console, checks: Checks) -> None:
    """The China declaration's filing and status history as ``Declarations.vy`` holds it (the
    observer's JSON-RPC), its document hash the keccak-256 of the document the forwarder
    submitted (the draft as the API shows it, checked against the submission's SHA-256)."""
    sub = next((s for s in subs if s["authority"] == "cn-itsw"), None)
    if sub is None or not china:
        checks.check("declarations: the China declaration's status history on chain", False,
                     "no China submission")
        return
    forwarder, customs, trader = (simulate.PARTIES[p] for p in ("forwarder", "customs",
                                                                   "trader"))
    wanted = [onchain.STATUS_CODES[h["status"]] for h in sub.get("history", [])
              if h["status"] in onchain.STATUS_CODES]
    status, view = _declaration_call(port, forwarder, "GET", f"/v1/declarations/{sid}")
    salt = bytes.fromhex(str((view or {}).get("chainSalt") or "0x")[2:]) if status == 200 \
        else b""
    mine: dict[str, Any] = next((s for s in (view or {}).get("submissions", [])
                                 if s["id"] == sub["id"]), {})
    key = onchain.chain_key(salt, "cn-itsw", china) if len(salt) == 32 else b""
    checks.check(f"declarations: China declaration {china} is keyed on chain by its secret "
                 "salt (shown to its readers), not by the number's hash",
                 bool(key) and (mine.get("chain") or {}).get("key") == "0x" + key.hex()
                 and key != subject_key(china),
                 f"key 0x{key.hex()[:16]}… = HMAC-SHA256(salt, authority 2, number); "
                 f"the number's hash 0x{subject_key(china).hex()[:16]}…")

    def posted() -> tuple[Any, list[Any], list[int]] | None:
        found = _declared_on_chain(observer, key)
        statuses = [entry[0] for entry in found[1]]
        return found if statuses[-1:] == [onchain.STATUS_CODES["released"]] \
            and len(found[2]) == len(found[1]) else None

    found = _eventually(posted, f"China declaration {china} released on chain", timeout=120)
    record, history, blocks = found if found is not None else _declared_on_chain(observer, key)
    names = {v: k for k, v in onchain.STATUS_CODES.items()} | {1: "filed"}
    table = Table(title=f"China declaration {china} in Declarations.vy (eth_call historyOf, "
                  "StatusPosted logs)", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("status", "by organisation", "block", "time"):
        table.add_column(column)
    for entry, block in zip(history, blocks + [0] * len(history), strict=False):
        org = int(entry[1])
        table.add_row(names.get(entry[0], str(entry[0])),
                      f"{DEMO_ORGANISATIONS[org - 1][0]} ({org})"
                      if 0 < org <= len(DEMO_ORGANISATIONS) else str(org),
                      f"#{block}" if block else "—", iso_time(int(entry[3])))
    console.print(table)
    draft = next((d for d in (view or {}).get("drafts", []) if d["key"] == sub["draft"]),
                 None) if status == 200 else None
    document = {} if draft is None else {
        "key": draft["key"], "authority": draft["authority"],
        "fields": {k: f["value"] for k, f in draft["fields"].items()},
        "lines": [{k: f["value"] for k, f in line.items()} for line in draft["lines"]]}
    same = bool(document) and document_hash(document) == sub["documentHash"]
    digest = onchain.document_digest(document) if same else b""
    steps = [(entry[0], entry[1]) for entry in history]
    checks.check(f"declarations: China declaration {china} on chain: filed by the forwarder "
                 "(document hash), statuses by customs to released",
                 same and record[0] == forwarder and record[1] == 2 and record[2] == digest
                 and record[3] == onchain.STATUS_CODES["released"]
                 and steps == [(1, forwarder)] + [(s, customs) for s in wanted],
                 " → ".join(f"{names.get(e[0], e[0])} (block {b})" for e, b in
                            zip(history, blocks, strict=False))
                 + f"; document hash 0x{bytes(record[2]).hex()[:16]}… "
                 + ("= keccak-256 of the submitted document" if record[2] == digest and same
                    else f"≠ 0x{digest.hex()[:16]}… (document as shown "
                    f"{'matches' if same else 'does not match'} its SHA-256)"))
    plain, plain_history, plain_logs = _declared_on_chain(observer, subject_key(china))
    checks.check("declarations: the chain has no filing under the number's plain hash",
                 int(plain[0]) == 0 and int(plain[1]) == 0 and not plain_history
                 and not plain_logs,
                 f"declarationOf(keccak({china})): declarant {int(plain[0])}, authority "
                 f"{int(plain[1])}; {len(plain_history)} status(es), {len(plain_logs)} log(s)")
    # the customs events of its results name its keyed alias (HMAC of the same salt), never it
    alias = onchain.alias(salt, "cn-itsw", china) if len(salt) == 32 else ""

    def cargo_logs(reference: str) -> list[Any]:
        return list(rpc_call(observer, "eth_getLogs", [{
            "fromBlock": "0x0", "address": SYSTEM_ADDRESSES["CargoLedger"],
            "topics": [["0x" + CARGO_EVENT_TOPIC.hex()], ["0x" + subject_key(reference).hex()]],
        }], timeout=30))

    named, aliased = cargo_logs(china), cargo_logs(alias) if alias else []
    checks.check("declarations: no customs event on chain names the China number's plain hash",
                 not named and bool(aliased) and (mine.get("chain") or {}).get("alias") == alias,
                 f"{len(named)} cargo event(s) under keccak({china}); {len(aliased)} under its "
                 f"alias {alias[:12]}… (HMAC of the salt)")

    def on_chain_seen() -> dict[str, Any] | None:
        status, body = port.track(trader, china)
        decls = (body or {}).get("declarations") or [] if status == 200 else []
        return decls[0] if decls and decls[0].get("status") == "released" and \
            len(decls[0].get("history", [])) == len(history) else None

    seen = _eventually(on_chain_seen, f"the trader's view of {china}'s filing", timeout=60)
    checks.check(f"declarations: the trader (named reader) tracking {china} sees its on-chain "
                 "history", seen is not None,
                 " → ".join(f"{h['status']} by {h['by']}" for h in (seen or {}).get(
                     "history", [])) or "not shown")


def _port_systems(port: Port, observer: NodeSpec, call: simulate.VesselCall, console: Console,
                  checks: Checks) -> None:
    """The port's systems in their own formats: each upload, then what each party sees."""
    console.rule("the port's systems in their own formats (POST /v1/feeds/{format})")
    for upload in feedstory.port_systems(call, int(time.time())):
        started = time.monotonic()
        body = _post(port, upload)
        final = _finalise(port, upload, list(body["receipts"]))
        console.print(_played(upload, body, final, time.monotonic() - started))
    reading = _ais_seen(port, call, checks)
    _reefer_seen(port, call, checks)
    _air_waybill_seen(port, call, checks)
    _terminal_seen(port, call, checks)
    _customs_seen(port, call, checks)
    _reading_proof(port, observer, reading, console, checks)


def _ais_seen(port: Port, call: simulate.VesselCall, checks: Checks) -> int | None:
    """The trader sees the vessel moored at the berth by its IMO number; the id of the AIS
    reading that says so."""
    trader = simulate.PARTIES["trader"]

    def moored() -> dict[str, Any] | None:
        vessel = _vessel_of(port, trader, call.vessel_imo)
        ais = vessel.get("ais") or {}
        return vessel if ais.get("status") == "moored" and _ais_derived(vessel) else None

    vessel = _eventually(moored, "the trader's view of the vessel, moored") or {}
    ais, derived = vessel.get("ais") or {}, _ais_derived(vessel)
    checks.check(f"AIS NMEA: the trader tracks IMO {call.vessel_imo} and sees it moored at "
                 f"{simulate.POD}",
                 ais.get("status") == "moored" and derived.get("atPort") is True
                 and derived.get("port") == simulate.POD,
                 f"{ais.get('lat')}N {ais.get('lon')}E {ais.get('status')} since "
                 f"{ais.get('time')}, {len(vessel.get('track') or [])} positions in its track; "
                 f"AIS-derived: {derived.get('distanceNm')} nm from {derived.get('portName')}"
                 if ais else "no AIS position in the view")
    status, body, _ = port.clients[trader].get(f"/v1/vessels/{call.vessel_imo}/positions")
    latest = body.get("latest") if status == 200 and isinstance(body, dict) else None
    return int(latest["id"]) if isinstance(latest, dict) else None


def _reefer_seen(port: Port, call: simulate.VesselCall, checks: Checks) -> None:
    """The forwarder (a named reader) sees the reefer's readings and the excursion; the trader
    and the competitor terminal, who hold the container number, see none of them."""
    box = call.containers[0]
    path = f"/v1/telemetry/readings?subject=container:{box}&type=reefer"
    forwarder = simulate.PARTIES["forwarder"]
    status, body, _ = port.clients[forwarder].get(path)
    readings = body.get("readings", []) if status == 200 and isinstance(body, dict) else []
    measured: list[tuple[float, dict[str, Any]]] = [
        (r["temperature"] - r["setpoint"], r) for r in readings
                if isinstance(r.get("temperature"), int | float)
                and isinstance(r.get("setpoint"), int | float)]
    no_peak: tuple[float, dict[str, Any]] = (0.0, {})
    deviation, peak = max(measured, key=lambda m: m[0], default=no_peak)
    above = sum(1 for d, _ in measured if d > EXCURSION_DEGREES) * feedstory.REEFER_INTERVAL
    _, house = port.track(forwarder, call.house)
    history = next((c.get("reeferHistory") for c in (house or {}).get("containers", [])
                    if c.get("number") == box), None)
    checks.check(f"DCSA Reefer 1.0: the forwarder sees {box}'s reefer history with the excursion",
                 deviation > EXCURSION_DEGREES and bool(history),
                 f"{len(readings)} readings; peak {deviation:+.1f} °C over the set point "
                 f"{peak.get('setpoint')} °C at {peak.get('time')}, {above} min above "
                 f"+{EXCURSION_DEGREES} °C; {len(history or [])} in its house B/L view"
                 if peak else f"HTTP {status}, no readings")

    blind, seen = True, []
    for who, reference in (("trader", call.house), ("competitor", box)):
        org = simulate.PARTIES[who]
        status, _, _ = port.clients[org].get(path)
        view_status, view = port.track(org, reference)
        shown = [c["number"] for c in (view or {}).get("containers", []) if c.get("number")]
        clear = "reeferHistory" not in json.dumps(view)
        blind &= status == 404 and view_status == 200 and box in shown and clear
        seen.append(f"{who}: readings HTTP {status}, its view of {reference} shows {box} "
                    f"{'without' if clear else 'WITH'} reefer readings")
    checks.check(f"DCSA Reefer 1.0: the trader and the competitor terminal see none of {box}'s "
                 "readings", blind, "; ".join(seen))


def _air_waybill_seen(port: Port, call: simulate.VesselCall, checks: Checks) -> None:
    """The forwarder (named reader) tracks the air waybill through every milestone; the bank
    finds nothing."""
    awb = feedstory.air_waybill(call)
    forwarder, bank = simulate.PARTIES["forwarder"], simulate.PARTIES["bank"]

    def delivered() -> dict[str, Any] | None:
        status, view = port.track(forwarder, awb)
        bill = (view or {}).get("airWaybill") if status == 200 else None
        return bill if bill and all(m["done"] for m in bill["milestones"]) else None

    bill = _eventually(delivered, "the forwarder's view of the air waybill") or {}
    steps = bill.get("milestones") or []
    flights = [f"{f['flight']} {f.get('from')}→{f.get('to')}" for f in bill.get("flights", [])]
    shipment = feedstory.air_shipment(call)
    checks.check(f"IATA Cargo-IMP FSU: the forwarder tracks air waybill {awb} from BKD to DLV",
                 [m["code"] for m in steps if m["done"]] == list(cargo_imp.SEQUENCE)
                 and any(f.startswith(shipment.flight) for f in flights)
                 and bill.get("pieces") == shipment.pieces
                 and bill.get("weight") == shipment.weight_kg,
                 f"{' → '.join(m['code'] for m in steps if m['done'])}, "
                 f"{steps[0]['time']} to {steps[-1]['time']}; {', '.join(flights)}; "
                 f"{bill.get('pieces')} pieces, {bill.get('weight')} kg" if steps else "no view")
    status, body = port.track(bank, awb)
    checks.check(f"IATA Cargo-IMP FSU: the bank sees nothing of air waybill {awb}",
                 status == 404 and shipment.flight not in json.dumps(body),
                 f"HTTP {status}" + (f" {body['error']['code']}" if status == 404 else ""))


def _terminal_seen(port: Port, call: simulate.VesselCall, checks: Checks) -> None:
    """The carrier's view of the master B/L: the COARRI discharges and the CODECO gate-out."""
    carrier, box = simulate.PARTIES["carrier"], call.containers[-1]

    def gated_out() -> dict[str, Any] | None:
        status, view = port.track(carrier, call.master)
        boxes = {c["number"]: c for c in (view or {}).get("containers", [])}
        return view if status == 200 and boxes.get(box, {}).get("status") == "gated-out" \
            else None

    view = _eventually(gated_out, f"the carrier's view of {box} gated out") or {}
    discharges = {e["subject"]["value"]: e["details"] for e in view.get("timeline", [])
                  if e["type"] == "TERMINAL.DISC" and e["details"].get("messageType") == "COARRI"}
    checks.check(f"UN/EDIFACT COARRI: the carrier's view of master B/L {call.master} shows the "
                 f"{len(call.containers)} discharges with their stowage cells",
                 set(discharges) == set(call.containers)
                 and all(d.get("stowageCell") for d in discharges.values()),
                 ", ".join(f"{n} in cell {d.get('stowageCell')}"
                           for n, d in sorted(discharges.items())) or "none")
    boxes = {c["number"]: c for c in view.get("containers", [])}
    gate = boxes.get(box, {})
    checks.check(f"UN/EDIFACT CODECO: the carrier's view shows {box} gated-out",
                 gate.get("status") == "gated-out",
                 f"{gate.get('status')} at {gate.get('statusTime')}" if gate else "no view")


def _customs_seen(port: Port, call: simulate.VesselCall, checks: Checks) -> None:
    """The trader sees its containers released by customs, and the declaration released."""
    trader = simulate.PARTIES["trader"]
    status, body = port.track(trader, call.house)
    house: dict[str, Any] = body if status == 200 and isinstance(body, dict) else {}
    released = {e["subject"]["value"] for e in house.get("timeline", [])
                if e["type"] == "CUSTOMS.CUSR" and e["subject"]["kind"] == "container"}
    customs = house.get("customs") or {}
    checks.check("customs status messages: the trader's containers show customs released",
                 customs.get("status") == "released"
                 and released == set(call.house_containers),
                 f"{', '.join(sorted(released)) or 'none'} released at {customs.get('time')} "
                 f"by {customs.get('source')}")
    number = feedstory.declaration_number(call)
    status, body = port.track(trader, number)
    declaration: dict[str, Any] = body if status == 200 and isinstance(body, dict) else {}
    history = [f"{str(e['details'].get('status', e['type'])).lower()} {e['time']}"
               for e in declaration.get("timeline", [])]
    checks.check(f"customs status messages: tracking declaration {number} shows released",
                 (declaration.get("customs") or {}).get("status") == "released",
                 ", then ".join(history) or f"HTTP {status}")


def _reading_proof(port: Port, observer: NodeSpec, reading: int | None, console: Console,
                   checks: Checks) -> None:
    """Wait for the AIS reading's anchor, export its proof bundle, verify it offline."""
    if reading is None:
        checks.check("AIS NMEA: an anchored position verified offline by portledger "
                     "verify-proof", False, "no AIS reading to prove")
        return
    bank = port.clients[simulate.PARTIES["bank"]]

    def anchored() -> dict[str, Any] | None:
        status, body, _ = bank.get(f"/v1/telemetry/readings/{reading}")
        anchor = body.get("anchor") if status == 200 and isinstance(body, dict) else None
        return anchor if anchor and anchor.get("status") == "anchored" and anchor.get("block") \
            else None

    anchor = _eventually(anchored, f"reading {reading} anchored", ANCHOR_TIMEOUT)
    if anchor is None:
        checks.check("AIS NMEA: an anchored position verified offline by portledger "
                     "verify-proof", False, f"reading {reading} not anchored within "
                     f"{ANCHOR_TIMEOUT:g} s")
        return
    status, bundle, _ = bank.post(f"/v1/proofs/readings/{reading}")
    if status != 200 or not isinstance(bundle, dict):
        raise DemoError(f"proof bundle of reading {reading}: the gateway answered {status}: "
                        f"{bundle}")
    path = port.layout.root.parent / f"proof-ais-reading-{reading}.json"
    path.write_text(json.dumps(bundle, indent=1) + "\n")
    genesis = observer.datadir / "genesis.json"
    console.print(f"the bank exports reading #{reading}'s proof bundle "
                  f"([cyan]POST /v1/proofs/readings/{reading}[/]) to {path} and checks it "
                  f"offline: portledger verify-proof {path} --genesis {genesis}")
    verify = subprocess.run(
        [sys.executable, "-m", "portledger", "verify-proof", str(path), "--genesis", str(genesis)],
        capture_output=True, text=True, timeout=120,
    )
    console.print(verify.stdout.strip() or verify.stderr.strip())
    checks.check(f"AIS NMEA: anchored position #{reading} verified offline by portledger "
                 "verify-proof", verify.returncode == 0,
                 f"batch {anchor.get('batch')}, anchor {anchor.get('anchorId')} in block "
                 f"#{anchor.get('block')}; exit {verify.returncode}")


def _on_chain(port: Port, observer: NodeSpec, call: simulate.VesselCall,
              blocks: dict[str, list[int]], console: Console, checks: Checks) -> None:
    console.rule("on chain (the observer's JSON-RPC)")
    names = {n.address.lower(): n.name for n in port.layout.validators}
    table = Table(title="which validators sealed the story's blocks (seals checked against the "
                  "parent's validator list)", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("step", "block", "sealed by"):
        table.add_column(column, no_wrap=column != "step")
    sealed = True
    for what, numbers in blocks.items():
        for number in numbers:
            try:
                signers = sealers(observer, number)
                who = ", ".join(names.get(to_checksum_address(s).lower(), s.hex()[:10])
                                for s in signers)
            except extradata.InvalidSeal as exc:
                sealed, who = False, f"[red]{exc}[/]"
            table.add_row(what, f"#{number}", who)
    console.print(table)
    checks.check("every block of the story carries a quorum of valid validator seals", sealed)
    box_number = call.containers[0]
    logs = rpc_call(observer, "eth_getLogs", [{
        "fromBlock": "0x0", "address": SYSTEM_ADDRESSES["CargoLedger"],
        "topics": [["0x" + CARGO_EVENT_TOPIC.hex()], ["0x" + subject_key(box_number).hex()]],
    }], timeout=30)
    text = json.dumps(logs).lower()
    secrets = [call.master, call.house, *call.containers, call.vessel_name, simulate.TERMINAL_NAME]
    leaked = [s for s in secrets if s.lower() in text or s.encode().hex() in text]
    console.print(f"  {len(logs)} cargo events about {box_number} on chain, found by its subject "
                  f"key 0x{subject_key(box_number).hex()[:16]}… (COARRI discharge, customs hold "
                  "and release, available for pick-up, DCSA Reefer set point); their payloads "
                  "are ciphertext")
    checks.check(f"the chain holds {box_number}'s {FIRST_CONTAINER_EVENTS} events, and no "
                 "reference number or name in clear",
                 len(logs) == FIRST_CONTAINER_EVENTS and not leaked,
                 f"{len(logs)} events" + (f"; in clear: {', '.join(leaked)}" if leaked else ""))


def _show_live_port(port: Port, call: simulate.VesselCall, console: Console) -> None:
    console.rule("[bold]the demo port is running")
    url = port.gateway.url
    console.print(f"gateway  {url}/  (web pages: /track, /alerts, /containers/<number>, "
                  f"/vessels/<imo>, /access-log, /keys)   API docs  {url}/docs")
    table = Table(title="demo logins (PUBLIC demo passwords)", box=box.SIMPLE_HEAD,
                  title_justify="left")
    for column in ("organisation", "roles", "org", "email", "password"):
        table.add_column(column, no_wrap=True)
    for o in port.gateway.credentials()["organisations"]:
        table.add_row(o["name"], ", ".join(o["roles"]) or "trader", str(o["chainOrg"]),
                      o["email"], o["password"])
    console.print(table)
    console.print(f"try: sign in as the trader and track house B/L {call.house}, master B/L "
                  f"{call.master} as the bank, vessel IMO {call.vessel_imo}, or container "
                  f"{call.containers[0]}.")
    console.print("a SIMULATED live feed now posts an incoming vessel's AIS positions (NMEA) "
                  "and ETA updates (DCSA 2.2), and CODECO gate moves, through the gateway. "
                  "[bold]Ctrl-C stops everything.[/]")


def _live(port: Port, call: simulate.VesselCall, console: Console, checks: Checks, *,
          interval: float, duration: float = 0.0, ticks: int = 0) -> None:
    """Post the live feed's ticks: ``ticks`` of them (0: until Ctrl-C or ``duration``)."""
    console.rule("live feed (SIMULATED)")
    feed = feedstory.LiveFeed(call, int(time.time()), seed=call.serial)
    deadline = time.monotonic() + duration if duration > 0 else None
    pending: list[tuple[simulate.Upload, list[dict[str, Any]]]] = []
    finals = failures = 0
    try:
        while True:
            now = int(time.time())
            try:
                for upload, receipts in pending:  # the previous tick's, a tick later
                    finals += len(_finalise(port, upload, receipts, timeout=30))
                pending = [(u, _send(port, u)) for u in feed.tick(now)]
                failures = 0
            except (DemoError, DevnetError, OSError) as exc:
                failures += 1
                pending = []
                console.print(f"[red]tick {feed.ticks} failed: {exc}")
                if failures >= MAX_FAILED_TICKS:
                    raise DemoError(f"{failures} live ticks in a row failed") from exc
                time.sleep(interval)
                continue
            for upload, _ in pending:
                console.print(f"[dim]{iso_time(now)}[/] [bold]{upload.party:>9}[/] {upload.what} "
                              f"[dim]({upload.standard})[/]")
            if feed.ticks % SUMMARY_TICKS == 0:
                _summary(port, call, console, feed.ticks, finals)
            if ticks and feed.ticks >= ticks:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        console.print("\nCtrl-C: the live feed stops")
    if ticks:
        sent = sum(len(r) for _, r in pending)
        final = sum(len(_finalise(port, u, r)) for u, r in pending)
        checks.check("the live feed's uploads are accepted and final on chain",
                     sent > 0 and final == sent, f"{final} of {sent} operation(s)")
        _next_vessel_seen(port, feed, checks)
    else:
        console.print(f"live feed: {feed.ticks} ticks, {finals} operations final on chain")


def _next_vessel_seen(port: Port, feed: feedstory.LiveFeed, checks: Checks) -> None:
    """The next vessel's view: its AIS position, and the AIS-derived ETA beside the carrier's."""
    call = feed.next_call

    def probe() -> dict[str, Any] | None:
        vessel = _vessel_of(port, simulate.PARTIES["trader"], call.vessel_imo)
        carrier = [e for e in vessel.get("etas") or [] if e.get("source") != "AIS-derived"]
        return vessel if vessel.get("ais") and _ais_derived(vessel) and carrier else None

    vessel = _eventually(probe, "the next vessel's view with its AIS position") or {}
    ais, derived = vessel.get("ais") or {}, _ais_derived(vessel)
    carrier: dict[str, Any] = next(
        (e for e in vessel.get("etas") or [] if e.get("source") != "AIS-derived"), {})
    checks.check(f"AIS NMEA: the next vessel {call.vessel_imo} shows its AIS position and an "
                 "AIS-derived ETA beside the carrier's",
                 bool(ais) and bool(derived) and carrier.get("time") == iso_time(feed.eta),
                 f"{ais.get('lat')}N {ais.get('lon')}E {ais.get('sog')} kn; AIS-derived "
                 f"{derived.get('time')} ({derived.get('method')}, {derived.get('distanceNm')} "
                 f"nm) beside {carrier.get('source')}'s {carrier.get('time')}"
                 if ais else "no AIS position in the view")


def _summary(port: Port, call: simulate.VesselCall, console: Console, ticks: int,
             finals: int) -> None:
    """One line: the chain's head and the story's containers as the trader sees them now."""
    try:
        head = int(port.devnet.rpc(len(port.layout.nodes) - 1, "eth_blockNumber"), 16)
        status, view = port.track(simulate.PARTIES["trader"], call.house)
    except (OSError, DevnetError) as exc:
        console.print(f"[red]after {ticks} ticks: no summary ({exc})")
        return
    shown = ", ".join(f"{c['number']} {c.get('status')}" for c in view.get("containers", [])) \
        if status == 200 else f"HTTP {status}"
    console.print(f"[bold]after {ticks} ticks[/]: head #{head}, {finals} live operations final; "
                  f"the trader's house B/L {call.house}: {shown}")


def _replay(observer: NodeSpec, console: Console, checks: Checks) -> None:
    console.rule("auditor replay from genesis (the observer's copy)")
    try:
        replay = subprocess.run(
            [sys.executable, "-m", "portledger", "replay", "--datadir", str(observer.datadir)],
            capture_output=True, text=True, timeout=600,
        )
    except (KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        checks.check("the observer's chain replays from genesis", False,
                     "interrupted" if isinstance(exc, KeyboardInterrupt) else "timed out")
        return
    console.print(replay.stdout.strip() or replay.stderr.strip())
    checks.check("the observer's chain replays from genesis, every root verified",
                 replay.returncode == 0 and "every root verified" in replay.stdout)
