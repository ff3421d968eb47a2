"""The landing page: for a signed-in user “my shipments” — a personal watch list, each
reference with its status at a glance (last milestone in words, ETA, customs status) and its
open alerts — and the track box for everyone else.

Why a per-user list and not the alerts' follows: following (``/v1/alerts/follows``) is per
*organisation* — it makes the whole organisation hold a reference, which changes what its alerts
evaluate and what everyone in it may read by reference. A person's "my shipments" is a personal
shortlist: adding to it must change nothing for colleagues, and removing it must not stop
anyone's alerts. So the list is its own small table (:class:`WatchList`, ``watchlist.db``), one
row per (user, reference); a user who wants the organisation to be alerted follows as before.

Watching opens nothing: each row is read, when the page is shown, through the same tracking
service as ``/track`` (``Tracking.shipment_of``: the same visibility rule and the same
access-log entries, since the user is looking at it), so a reference nobody shared with the
user's organisation shows "Nothing you may see", exactly as tracking says. The open alerts
count is the organisation's open alerts (of the user's preferred kinds) about the reference,
its containers and its vessel, through the alerts' own inbox query.

API (session users only: a watch list belongs to a person, an API key has none):
``GET /v1/watchlist``, ``POST /v1/watchlist`` ``{"reference": "..."}``,
``POST /v1/watchlist/remove`` ``{"reference": "..."}`` (a post, as the
pages' buttons send).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway import openapi, sqlite
from gateway.alerts.api import NotAMember, inbox_of
from gateway.appkeys import ALERTS, CONFIG, TRACKING
from gateway.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from gateway.events import identifiers
from gateway.events.model import Reference
from gateway.isotime import iso_time
from gateway.jsonbody import read_json
from gateway.principal import Principal, principal_of, require
from gateway.ui import shell
from gateway.ui.i18n import Translator
from gateway.ui.shell import e, render, translator
from gateway.web import timeline
from gateway.web.pages import track_form

#: Most references one user watches.
MAX_WATCHED = 100
#: Containers of one watched reference whose alerts are counted.
ALERT_SUBJECTS = 20

pages = shell.Pages()
api = openapi.Routes(tag="pages", description="The pages' own resources (a user's watch list)")


class TooManyWatched(Exception):
    """The user already watches :data:`MAX_WATCHED` references."""


@dataclass(frozen=True)
class Watched:
    """One reference a user watches."""

    value: str
    """As normalised (upper case, no separators)."""
    kind: str
    """The kind it was detected as when added (the view's kind shows when it is found)."""
    added: int
    """Unix seconds."""


class WatchList:
    """The users' watch lists (one SQLite file)."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS watched (user_id INTEGER NOT NULL, "
            "org_id INTEGER NOT NULL, value TEXT NOT NULL, kind TEXT NOT NULL, "
            "added INTEGER NOT NULL, PRIMARY KEY (user_id, value))")

    def close(self) -> None:
        self._db.close()

    def of(self, user_id: int, org_id: int) -> list[Watched]:
        """What a user watches (for its current organisation), newest first."""
        rows = self._db.execute(
            "SELECT value, kind, added FROM watched WHERE user_id = ? AND org_id = ? "
            "ORDER BY added DESC, value", (user_id, org_id)).fetchall()
        return [Watched(v, k, a) for v, k, a in rows]

    def add(self, user_id: int, org_id: int, value: str, kind: str, now: int) -> bool:
        """Watch ``value``; False if already watched; :class:`TooManyWatched` when full."""
        with sqlite.transaction(self._db):
            (count,) = self._db.execute("SELECT COUNT(*) FROM watched WHERE user_id = ?",
                                        (user_id,)).fetchone()
            found = self._db.execute("SELECT 1 FROM watched WHERE user_id = ? AND value = ?",
                                     (user_id, value)).fetchone()
            if found:
                return False
            if count >= MAX_WATCHED:
                raise TooManyWatched
            self._db.execute("INSERT INTO watched VALUES (?, ?, ?, ?, ?)",
                             (user_id, org_id, value, kind, now))
        return True

    def remove(self, user_id: int, value: str) -> bool:
        """Stop watching; False if it was not watched."""
        with sqlite.transaction(self._db):
            cursor = self._db.execute("DELETE FROM watched WHERE user_id = ? AND value = ?",
                                      (user_id, value))
        return cursor.rowcount > 0


WATCHLIST = web.AppKey("portledger.web.watchlist", WatchList)


def parse_reference(text: str) -> tuple[str, str]:
    """``(value, kind)`` of a typed reference (any kind: the first valid reading, else the
    first); :class:`~gateway.errors.Unprocessable` if it is no reference."""
    text = text.strip()
    found = identifiers.detect(text) if 0 < len(text) <= 64 else []
    if not found:
        raise Unprocessable(f"{text[:40]!r} is not a reference number", code="not-a-reference")
    best = next((c for c in found if c.valid), found[0])
    return best.value, best.kind


def _user(request: web.Request) -> Principal:
    principal = require(request, "tracking:read")
    if principal.user_id is None:
        raise Forbidden("a watch list belongs to a signed-in user, not an API key",
                        code="user-only")
    return principal


# -- what a row shows ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """A watched reference at a glance (plain text values but ``eta`` and ``last``, which are
    HTML)."""

    watched: Watched
    visible: bool
    kind: str = ""
    last: str = ""
    eta: str = ""
    customs: str = ""
    alerts: int | None = None


def _alert_count(request: web.Request, principal: Principal, view: dict[str, Any]) -> int | None:
    service = request.app.get(ALERTS)
    if service is None:
        return None
    subjects = [Reference(str(view.get("kind")), str(view.get("reference")))]
    subjects += [Reference("container", c["number"])
                 for c in (view.get("containers") or [])[:ALERT_SUBJECTS]
                 if c.get("number") != view.get("reference")]
    imo = (view.get("vessel") or {}).get("imo")
    if imo:
        subjects.append(Reference("vessel", str(imo)))
    ids: set[int] = set()
    try:
        for ref in subjects:
            found, _ = inbox_of(service, principal, state="open", kinds=[], unread=False,
                                before=None, limit=100, subject=ref)
            ids.update(int(a["id"]) for a in found)
    except NotAMember:
        return None
    return len(ids)


def row_of(request: web.Request, principal: Principal, t: Translator, watched: Watched,
           now: int) -> Row:
    """A watched reference as the user's organisation may see it now."""
    try:
        view = request.app[TRACKING].shipment_of(principal, watched.value)
    except (BadRequest, Forbidden):  # no longer a reference / not a member: nothing to see
        view = None
    if view is None:
        return Row(watched, visible=False)
    names = {}
    vessel = view.get("vessel") or {}
    if vessel.get("imo") and vessel.get("name"):
        names[str(vessel["imo"])] = str(vessel["name"])
    done = [x for x in view.get("timeline") or []
            if not x.get("retracted") and x.get("classifier") == "ACT"]
    last_entry = max(done, key=lambda x: (x.get("time") or "", x.get("eventId") or 0),
                     default=None)
    last = ""
    if last_entry is not None:
        last = (e(timeline.sentence(t, last_entry, names)) + "<br>"
                + timeline.time_html(t, last_entry.get("time"), last_entry.get("location")))
    eta = ""
    rows = timeline.eta_rows(vessel, now) if isinstance(vessel, dict) else []
    if rows:
        latest = max(rows, key=lambda r: (r.age_seconds is not None, -(r.age_seconds or 0)))
        eta = timeline.time_html(t, latest.time, latest.location or vessel.get("portOfCall"))
    customs = ""
    found = view.get("customs")
    if isinstance(found, dict) and found.get("status"):
        key = "track.customs." + str(found["status"])
        customs = t(key) if t.has(key) else str(found["status"])
    return Row(watched, visible=True, kind=str(view.get("kind") or watched.kind), last=last,
               eta=eta, customs=customs, alerts=_alert_count(request, principal, view))


def dashboard_html(request: web.Request, principal: Principal, t: Translator) -> str:
    """The "my shipments" section of the landing page."""
    now = timeline.now_seconds()
    store = request.app[WATCHLIST]
    watched = store.of(principal.user_id or 0, principal.org_id)
    rows = [row_of(request, principal, t, w, now) for w in watched]
    body = []
    for row in rows:
        value = row.watched.value
        link = f'<a href="/track?{e(urlencode({"q": value}))}">{e(value)}</a>'
        remove = (f'<button type=button class=secondary data-post="/v1/watchlist/remove" '
                  f"data-body='{e(_json({'reference': value}))}' "
                  f'aria-label="{e(t("landing.remove_label", ref=value))}">'
                  f'{e(t("landing.remove"))}</button>')
        if not row.visible:
            body.append(
                f'<tr class=hidden-ref><th scope=row>{link}</th>'
                f'<td colspan=4 data-label="{e(t("col.status"))}" class=muted>'
                f'{e(t("landing.nothing"))}</td><td>{remove}</td></tr>')
            continue
        kind = timeline.subject_text(t, row.kind, "").strip()
        alerts = "—" if row.alerts is None else (
            f'<a href="/alerts">{e(t("landing.alerts_count", count=row.alerts))}</a>'
            if row.alerts else "0")
        body.append(
            f'<tr><th scope=row>{link}<br><span class=muted>{e(kind)}</span></th>'
            f'<td data-label="{e(t("landing.col_last"))}">{row.last or "—"}</td>'
            f'<td data-label="{e(t("landing.col_eta"))}">{row.eta or "—"}</td>'
            f'<td data-label="{e(t("landing.col_customs"))}">{e(row.customs) or "—"}</td>'
            f'<td data-label="{e(t("landing.col_alerts"))}" class=num>{alerts}</td>'
            f"<td>{remove}</td></tr>")
    table = f'<p class=muted id=watch-empty>{e(t("landing.none"))}</p>' if not rows else f"""
<div class=scroll><table id=watchlist><caption class=visually-hidden>{e(t("landing.caption"))}
</caption><thead><tr><th scope=col>{e(t("landing.col_reference"))}</th>
<th scope=col>{e(t("landing.col_last"))}</th><th scope=col>{e(t("landing.col_eta"))}</th>
<th scope=col>{e(t("landing.col_customs"))}</th><th scope=col>{e(t("landing.col_alerts"))}</th>
<th scope=col><span class=visually-hidden>{e(t("col.action"))}</span></th></tr></thead>
<tbody>{"".join(body)}</tbody></table></div>"""
    return f"""<h1>{e(t("landing.mine"))}</h1>
<p>{e(t("landing.mine_intro"))}</p>
<form id=watch-form class=watch data-max="{MAX_WATCHED}" novalidate>
<label for=watch-ref>{e(t("landing.add_label"))}</label>
<div class=row><input id=watch-ref name=reference required maxlength=64 autocomplete=off
 spellcheck=false placeholder="{e(t("track.placeholder"))}"><button>{e(t("landing.add"))}</button>
</div></form>
<p class=message role=status aria-live=polite data-failed="{e(t("landing.failed"))}"></p>
{table}"""


def _json(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


@pages.get("/")
async def landing(request: web.Request) -> web.Response:
    """Landing page: "my shipments" for a signed-in user who may track, the track box for
    everyone else."""
    t = translator(request)
    principal = principal_of(request)
    if principal is not None and principal.role == "driver":
        raise web.HTTPFound("/driver")  # a driver's start: their jobs
    if (principal is not None and principal.via != "api_key" and principal.user_id is not None
            and "tracking:read" in principal.scopes):
        body = (dashboard_html(request, principal, t)
                + f'<h2>{e(t("landing.track_other"))}</h2>{track_form(t)}')
        return render(request, page="dashboard", title=t("landing.mine"), body=body)
    body = f"""<h1>{e(t("landing.title"))}</h1>
<p>{e(t("landing.intro"))}</p>
{track_form(t)}"""
    return render(request, page="landing", title=t("nav.track"), body=body)


# -- API ----------------------------------------------------------------------------------------
_BODY: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["reference"],
    "properties": {"reference": {"type": "string", "minLength": 1, "maxLength": 64}}}
_ERRORS = (400, 401, 403, 429)


@api.get("/v1/watchlist", openapi.operation(
    "The references you watch (your “my shipments” list)",
    ok_schema={"type": "object", "properties": {"watched": {"type": "array"}}},
    errors=_ERRORS,
))
async def list_watched(request: web.Request) -> web.Response:
    principal = _user(request)
    rows = request.app[WATCHLIST].of(principal.user_id or 0, principal.org_id)
    return web.json_response({"watched": [
        {"reference": w.value, "kind": w.kind, "since": iso_time(w.added)} for w in rows]})


@api.post("/v1/watchlist", openapi.operation(
    "Watch a reference (any kind); it shows only what your organisation may see",
    body=_BODY, ok=201, errors=(*_ERRORS, 409, 415, 422),
))
async def add_watched(request: web.Request) -> web.Response:
    principal = _user(request)
    body = await read_json(request, _BODY)
    value, kind = parse_reference(body["reference"])
    try:
        added = request.app[WATCHLIST].add(principal.user_id or 0, principal.org_id, value,
                                           kind, int(time.time()))
    except TooManyWatched:
        raise Conflict(f"you already watch {MAX_WATCHED} references",
                       code="too-many-watched") from None
    return web.json_response({"reference": value, "kind": kind, "added": added},
                             status=201 if added else 200)


@api.post("/v1/watchlist/remove", openapi.operation(
    "Stop watching a reference", body=_BODY, ok=204, errors=(*_ERRORS, 404, 415, 422),
))
async def remove_watched(request: web.Request) -> web.Response:
    principal = _user(request)
    body = await read_json(request, _BODY)
    value, _ = parse_reference(body["reference"])
    if not request.app[WATCHLIST].remove(principal.user_id or 0, value):
        raise NotFound("you do not watch it", code="not-watched")
    return web.Response(status=204)


async def _context(app: web.Application) -> AsyncIterator[None]:
    store = WatchList(app[CONFIG].path("watchlist.db"))
    app[WATCHLIST] = store
    try:
        yield
    finally:
        store.close()


def setup(app: web.Application) -> None:
    """The landing page, the watch list's store and its API."""
    app.cleanup_ctx.append(_context)
    pages.setup(app)
    api.install(app)
