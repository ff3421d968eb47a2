"""A SIMULATED customs authority service: Hong Kong TDEC and ROCARS, China ITSW — its own process
with its own HTTP API, for the demo and the tests. It is not, and never answers as, a
government system: every response carries ``"simulated": true`` and the ``X-Simulated`` header.

``python -m devnet.authority --port N --state DIR [--accept-after S] [--release-after S]``

API (JSON):

=========================================================  ===================================
``POST /v1/{authority}/submissions``                       lodge ``{"submissionId", "document"}``
                                                           (idempotent by ``submissionId``)
``GET /v1/{authority}/submissions/{id}``                   its status, number, reasons, history
``POST /v1/admin/faults``                                  inject faults into the next requests:
                                                           ``{"timeout": n, "garbage": n,
                                                           "error": n}``
``GET /healthz``                                           alive
=========================================================  ===================================

``authority`` is ``hk-tdec``, ``hk-rocars`` or ``cn-itsw``. A submission is ``received`` at
once, then, as time passes (the answers are asynchronous: a client polls):

- the document is validated (:func:`problems`): anything wrong → ``rejected`` with the reasons;
- else ``accepted`` after ``--accept-after`` seconds with an official number in the real
  layout — China: customs office (the document's ``CustomMaster``) + year + I/E flag (1 import,
  0 export) + a 9-digit sequence; TDEC: form + ``YYMMDD`` + a 7-digit sequence; CCRN: ``R`` +
  ``I``/``E`` + ``YYMMDD`` + a 6-digit sequence (``gateway/declarations/codes.py``);
- a China declaration with a line without 规格型号 (``GModel``) gets ``queried`` first (the
  query names the lines), answered by the SIMULATED declarant after a while;
- ``released`` after ``--release-after`` seconds.

State (submissions, sequences) is in ``DIR/authority.db`` (SQLite): a restart keeps every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from devnet.errors import DevnetError
from devnet.ports import free_port
from gateway.declarations import codes

AUTHORITIES = ("hk-tdec", "hk-rocars", "cn-itsw")
NOTICE = "SIMULATED authority service (PortLedger devnet) — not a government system"
#: How long an injected time-out holds a request (longer than any client's time-out).
TIMEOUT_HOLD = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    authority TEXT NOT NULL, id TEXT NOT NULL, document TEXT NOT NULL, received REAL NOT NULL,
    problems TEXT NOT NULL, queried TEXT NOT NULL, number TEXT, PRIMARY KEY (authority, id));
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

STATE: web.AppKey[State] = web.AppKey("authority_state")


def problems(authority: str, document: Any) -> list[str]:
    """Why the authority rejects ``document`` (empty: it is acceptable)."""
    if not isinstance(document, dict) or document.get("authority") != authority:
        return [f"the document is not a {authority} declaration"]
    fields = document.get("fields")
    lines = document.get("lines")
    if not isinstance(fields, dict) or not isinstance(lines, list):
        return ["the document has no fields and lines"]
    found: list[str] = []
    if authority == "hk-tdec":
        if fields.get("form") not in codes.TDEC_FORMS:
            found.append(f"form {fields.get('form')!r} is not a TDEC form")
        if not lines:
            found.append("a declaration has at least one line")
        for line in lines:
            problem = codes.check_hkhs(str(line.get("hkhsCode") or ""))
            if problem is not None:
                found.append(f"line {line.get('seq')}: {problem.message}")
        for name in ("importer", "exporter"):
            if name in fields and not fields[name]:
                found.append(f"{name} is missing")
    elif authority == "cn-itsw":
        problem = codes.check_uscc(str(fields.get("TradeCoScc") or ""))
        if problem is not None:
            found.append(f"统一社会信用代码: {problem.message}")
        problem = codes.check_customs_office(str(fields.get("CustomMaster") or ""))
        if problem is not None:
            found.append(f"申报地海关: {problem.message}")
        if fields.get("IEFlag") not in ("I", "E"):
            found.append("进出口标志 is I or E")
        for line in lines:
            problem = codes.check_cn_code(str(line.get("CodeTS") or ""))
            if problem is not None:
                found.append(f"项号 {line.get('GNo')}: {problem.message}")
    else:
        for name in ("packages", "packageDescription", "goodsDescription", "consignor",
                     "consignorAddress", "consignee", "consigneeAddress", "expectedDate"):
            if not fields.get(name):
                found.append(f"item {name} is missing")
        problem = codes.check_vehicle(str(fields.get("vehicle") or ""))
        if problem is not None:
            found.append(problem.message)
    return found


class State:
    """Submissions and number sequences in ``authority.db``; the clock; injected faults."""

    def __init__(self, folder: Path, accept_after: float, release_after: float,
                 query_after: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "authority.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.accept_after = accept_after
        self.release_after = release_after
        self.query_after = query_after
        self.faults: dict[str, int] = {"timeout": 0, "garbage": 0, "error": 0}

    def _next(self, name: str) -> int:
        self.db.execute("INSERT INTO sequences VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET "
                        "value = value + 1", (name,))
        (value,) = self.db.execute("SELECT value FROM sequences WHERE name = ?",
                                   (name,)).fetchone()
        return int(value)

    def number(self, authority: str, document: dict[str, Any], at: float) -> str:
        """A new official number in the authority's layout."""
        day = time.strftime("%y%m%d", time.gmtime(at + 8 * 3600))
        fields = document["fields"]
        if authority == "cn-itsw":
            office = str(fields["CustomMaster"])
            year = time.strftime("%Y", time.gmtime(at + 8 * 3600))
            flag = "1" if fields["IEFlag"] == "I" else "0"
            seq = self._next(f"cn:{office}:{year}:{flag}")
            return f"{office}{year}{flag}{seq:09d}"
        if authority == "hk-tdec":
            form = str(fields["form"])
            code = form if len(form) == 2 else f"0{form}"
            return f"{code}{day}{self._next(f'tdec:{day}'):07d}"
        flag = "I" if fields.get("direction") == "import" else "E"
        return f"R{flag}{day}{self._next(f'ccrn:{day}'):06d}"

    def lodge(self, authority: str, submission_id: str, document: Any) -> None:
        found = problems(authority, document)
        queried = []
        if not found and authority == "cn-itsw":
            queried = [f"项号 {line.get('GNo')}: 规格型号 (specification) is needed"
                       for line in document["lines"] if not line.get("GModel")]
        self.db.execute("INSERT OR IGNORE INTO submissions VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        (authority, submission_id, json.dumps(document, ensure_ascii=False),
                         time.time(), json.dumps(found), json.dumps(queried)))

    def view(self, authority: str, submission_id: str) -> dict[str, Any] | None:
        """A submission's status now (numbers are assigned when first due)."""
        row = self.db.execute("SELECT document, received, problems, queried, number FROM "
                              "submissions WHERE authority = ? AND id = ?",
                              (authority, submission_id)).fetchone()
        if row is None:
            return None
        document, received, found, queried, number = (json.loads(row[0]), row[1],
                                                      json.loads(row[2]), json.loads(row[3]),
                                                      row[4])
        now = time.time()
        history = [{"status": "received", "at": received}]
        status, reasons = "received", []
        accept_at = received + self.accept_after
        if found:
            if now >= accept_at:
                status, reasons = "rejected", found
                history.append({"status": "rejected", "at": accept_at})
        elif now >= accept_at:
            if number is None:
                number = self.number(authority, document, accept_at)
                self.db.execute("UPDATE submissions SET number = ? WHERE authority = ? AND "
                                "id = ?", (number, authority, submission_id))
            status = "accepted"
            history.append({"status": "accepted", "at": accept_at})
            release_at = received + self.release_after
            if queried:
                release_at += self.query_after
                if now >= accept_at:
                    status, reasons = "queried", queried
                    history.append({"status": "queried", "at": accept_at})
            if now >= release_at:
                status, reasons = "released", []
                history.append({"status": "released", "at": release_at})
        return {"submissionId": submission_id, "authority": authority, "status": status,
                "number": number, "reasons": reasons, "history": history, "simulated": True,
                "notice": NOTICE}


@web.middleware
async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Injected faults first; then label every answer SIMULATED."""
    state = request.app[STATE]
    if not request.path.startswith("/v1/admin") and request.path != "/healthz":
        for kind in ("timeout", "garbage", "error"):
            if state.faults[kind] > 0:
                state.faults[kind] -= 1
                if kind == "timeout":
                    await asyncio.sleep(TIMEOUT_HOLD)
                if kind == "garbage":
                    return web.Response(body=b"<html>SIMULATED garbage \x00\xff</html>",
                                        status=200, headers={"X-Simulated": "true"})
                return web.json_response({"error": "SIMULATED internal error",
                                          "simulated": True}, status=500,
                                         headers={"X-Simulated": "true"})
    response = await handler(request)
    response.headers["X-Simulated"] = "true"
    return response


routes = web.RouteTableDef()


def _authority(request: web.Request) -> str:
    name = request.match_info["authority"]
    if name not in AUTHORITIES:
        raise web.HTTPNotFound(text=json.dumps({"error": f"no authority {name!r}",
                                                "simulated": True}),
                               content_type="application/json")
    return name


@routes.post("/v1/{authority}/submissions")
async def submit(request: web.Request) -> web.Response:
    authority = _authority(request)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "not JSON", "simulated": True}, status=400)
    submission_id = body.get("submissionId") if isinstance(body, dict) else None
    if not isinstance(submission_id, str) or not 8 <= len(submission_id) <= 64 \
            or not submission_id.isalnum():
        return web.json_response({"error": "submissionId: 8 to 64 letters and digits",
                                  "simulated": True}, status=400)
    state = request.app[STATE]
    state.lodge(authority, submission_id, body.get("document"))
    return web.json_response(state.view(authority, submission_id), status=202)


@routes.get("/v1/{authority}/submissions/{submission_id}")
async def status(request: web.Request) -> web.Response:
    authority = _authority(request)
    found = request.app[STATE].view(authority, request.match_info["submission_id"])
    if found is None:
        return web.json_response({"error": "no such submission", "simulated": True},
                                 status=404)
    return web.json_response(found)


@routes.post("/v1/admin/faults")
async def set_faults(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE]
    for kind in state.faults:
        value = body.get(kind, 0) if isinstance(body, dict) else 0
        if isinstance(value, int) and 0 <= value <= 1000:
            state.faults[kind] = value
    return web.json_response({"faults": state.faults, "simulated": True})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    del request
    return web.json_response({"ok": True, "simulated": True, "notice": NOTICE})


def create_app(folder: Path, *, accept_after: float = 0.5, release_after: float = 1.5,
               query_after: float = 1.0) -> web.Application:
    """The SIMULATED authority's application over the state in ``folder``."""
    app = web.Application(middlewares=[faults])
    app[STATE] = State(folder, accept_after, release_after, query_after)
    app.add_routes(routes)
    return app


class AuthorityServer:
    """``python -m devnet.authority`` as a child process on a loopback port (tests, demo)."""

    def __init__(self, folder: Path, port: int | None = None, *, accept_after: float = 0.3,
                 release_after: float = 0.8, query_after: float = 0.5) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.args = ["--accept-after", str(accept_after), "--release-after",
                     str(release_after), "--query-after", str(query_after)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> AuthorityServer:
        """Start it; return once ``/healthz`` answers (DevnetError otherwise)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "authority.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devnet.authority", "--port", str(self.port), "--state",
             str(self.folder), *self.args], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevnetError("the SIMULATED authority exited "
                                  f"({self.process.returncode})")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DevnetError(f"the SIMULATED authority did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devnet.authority", description=NOTICE)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--accept-after", type=float, default=0.5)
    parser.add_argument("--release-after", type=float, default=1.5)
    parser.add_argument("--query-after", type=float, default=1.0)
    args = parser.parse_args(argv)
    web.run_app(create_app(args.state, accept_after=args.accept_after,
                           release_after=args.release_after, query_after=args.query_after),
                host=args.host, port=args.port, print=None, shutdown_timeout=0.5)


if __name__ == "__main__":
    main()
