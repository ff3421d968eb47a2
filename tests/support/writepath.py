"""Shared parts of the write-path tests: demo keys, demo events, reading the chain, and a runner.

The runner (``python -m tests.support.writepath --data-dir D --nodes U1,U2 --port P``)
is the gateway's write path as its own OS process — Outbox + Submitter + NodeClient + Keystore
behind one small aiohttp endpoint — so the kill tests can SIGKILL it at any instant:

``POST /accept`` with ``{"org": 1, "events": [{"key": "...", "event": {canonical JSON}}]}``
answers 200 with the receipts only after :meth:`Outbox.accept_async` committed them durably.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from contracts import SYSTEM_ADDRESSES
from contracts.cargo import CARGO_EVENT_TOPIC, CargoEvent, decode_event_log
from devnet.jsonrpc import RpcError, rpc_call
from gateway.confidential import envelope as confidential
from gateway.confidential.keystore import Keystore
from gateway.events import model as events
from gateway.events.model import CanonicalEvent, Reference, Visibility
from gateway.nodeclient import NodeClient
from gateway.writepath.operations import Operation, stored_event
from gateway.writepath.outbox import BODY_SECRET, Outbox
from gateway.writepath.submitter import Submitter
from node.genesis import dev_key, dev_x25519

PASSPHRASE = "writepath-test-passphrase"
#: Demo member indices used as gateway organisation ids: a terminal and a carrier.
TERMINAL, CARRIER = 1, 3


def demo_keystore(folder: Path, indices: tuple[int, ...] = (TERMINAL, CARRIER)) -> Keystore:
    """A keystore holding the demo members' development keys, gateway org id = member index."""
    store = Keystore(folder, PASSPHRASE)
    for index in indices:
        if index in store.org_ids():
            continue
        store.import_keys(
            index,
            signing_key=dev_key(f"org:{index}").to_bytes(),
            x25519_private=bytes(dev_x25519(f"org:{index}")),
            master_secret=secrets.token_bytes(32),
        )
    return store


def demo_event(n: int, *, kind: str = "TERMINAL.DISC", key: str = "", readers: tuple[int, ...] = (),
               mode: str = "named") -> CanonicalEvent:
    """An event about one of many containers; ``key`` is put in the details (to find it)."""
    return CanonicalEvent(
        event_type=kind,
        classifier="ACT",
        event_time=1_767_225_600 + n,
        subject=Reference("container", f"WPTU{n % 1_000_000:07d}"),
        location="HKHKG",
        details={"key": key or f"e{n}", "n": n},
        visibility=Visibility(mode, readers),
    )


def event_op(n: int, key: str | None = None, **kw: Any) -> Operation:
    """An event operation whose idempotency key is also in the event's details."""
    key = key or f"e{n}"
    return Operation(key, "event", demo_event(n, key=key, **kw))


def chain_cargo_events(url: str, from_block: int = 0) -> list[tuple[CargoEvent, dict[str, Any]]]:
    """Every cargo event log on chain since ``from_block``: (decoded event, raw log).

    Ranges are halved when the node refuses an answer as too large.
    """
    head = int(rpc_call(url, "eth_blockNumber", []), 16)
    out = []
    ranges = [(from_block, head)]
    while ranges:
        start, end = ranges.pop(0)
        try:
            logs = rpc_call(url, "eth_getLogs", [{
                "fromBlock": hex(start), "toBlock": hex(end),
                "address": SYSTEM_ADDRESSES["CargoLedger"],
                "topics": ["0x" + CARGO_EVENT_TOPIC.hex()],
            }], timeout=60)  # fmt: skip
        except RpcError as exc:
            if exc.code != -32005 or start == end:
                raise
            middle = (start + end) // 2
            ranges[:0] = [(start, middle), (middle + 1, end)]
            continue
        for entry in logs:
            topics = [bytes.fromhex(t[2:]) for t in entry["topics"]]
            out.append((decode_event_log(topics, bytes.fromhex(entry["data"][2:])), entry))
    return out


def open_keys(events_on_chain: list[tuple[CargoEvent, dict[str, Any]]], store: Keystore,
              org_of_publisher: dict[int, int]) -> list[tuple[int, str]]:
    """Decrypt every event as its owner; (publisher chain org, idempotency key in its details)."""
    out = []
    for ev, _ in events_on_chain:
        org = org_of_publisher.get(ev.publisher)
        if org is None:
            continue
        plain = confidential.open_as_owner(
            ev.payload, subject=ev.subject, owner_secret=store.get(org).master_secret
        )
        canonical = events.from_plaintext(plain)
        out.append((ev.publisher, str(canonical.details["key"])))
    return out


# -- the runner process ---------------------------------------------------------------------
def build_app(data_dir: Path, urls: list[str], *, batch_max: int, window_ms: int) -> web.Application:
    """The write path behind ``POST /accept`` and ``GET /status``."""
    app = web.Application(client_max_size=64 << 20)
    outbox_key = web.AppKey("wp_outbox", Outbox)
    submitter_key = web.AppKey("wp_submitter", Submitter)

    store = demo_keystore(data_dir / "keystore")

    async def ctx(app: web.Application) -> Any:
        node = NodeClient(urls, timeout=2.0, rounds=2, backoff=0.1)
        box = app[outbox_key]
        sub = Submitter(box, node, store, batch_max_events=batch_max, batch_window_ms=window_ms)
        app[submitter_key] = sub
        await sub.start()
        yield
        await sub.stop()
        await node.close()
        box.close()

    # Bodies encrypted as in the gateway: a restart must read them back (the lossless guarantee).
    app[outbox_key] = Outbox(data_dir / "outbox.sqlite", body_key=store.secret(BODY_SECRET))
    app.cleanup_ctx.append(ctx)

    async def accept(request: web.Request) -> web.Response:
        body = await request.json()
        ops = [Operation(e["key"], "event", stored_event(json.dumps(e["event"])))
               for e in body["events"]]
        receipts = await request.app[outbox_key].accept_async(int(body["org"]), ops)
        return web.json_response([r.to_json() for r in receipts])

    async def status(request: web.Request) -> web.Response:
        return web.json_response(request.app[outbox_key].counts())

    app.router.add_post("/accept", accept)
    app.router.add_get("/status", status)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--nodes", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch-max", type=int, default=200)
    parser.add_argument("--window-ms", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(args.data_dir, args.nodes.split(","), batch_max=args.batch_max,
                    window_ms=args.window_ms)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handle_signals=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
