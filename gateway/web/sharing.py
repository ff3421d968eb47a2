""""Who saw my data": the access log of the signed-in user's organisation, rendered by the
server, with filters (organisation, record, date range) and paging.

It reads exactly what ``GET /v1/access-log`` answers (:meth:`gateway.tracking.Tracking.
access_log_of`: the caller's own entries only, newest first, by entry id) and filters the pages
it reads. The log stores a record by its subject key (a hash), so a record filter is a
reference number typed by the user, matched by its key; a row names its record when the owner
knows the reference (one it looked up in tracking, one it granted, or the one filtered by). A page reads at most
:data:`SCAN_LIMIT` entries of the log: when a filter is rare, the page says how far back it
looked and offers the older ones ("Older" continues below the last entry read).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway.appkeys import READ_MODEL, TRACKING
from gateway.events import identifiers
from gateway.events.model import Reference
from gateway.intake.grants import GRANT_REGISTER
from gateway.intake.pages import readers_of, record_href, record_text
from gateway.principal import Principal
from gateway.ui import shell
from gateway.ui.i18n import HKT, Translator
from gateway.ui.shell import e, render, signed_in, translator

pages = shell.Pages()

#: Entries shown on one page.
PAGE_SIZE = 50
#: Entries read from the log to fill one page (bounds a page's work when a filter is rare).
SCAN_LIMIT = 5000
#: Entries read per call of the log.
CHUNK = 500
#: References the owner looked up that a page names records by (each costs a hash).
KNOWN_LIMIT = 2000


def _day(text: str) -> datetime | None:
    """A calendar day typed in the form (Hong Kong time), or None."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=HKT)
    except ValueError:
        return None


def _record(text: str) -> Reference | None:
    found = identifiers.detect(text) if 0 < len(text) <= 64 else []
    return Reference(found[0].kind, found[0].value) if found and found[0].valid else None


def _filters(request: web.Request) -> dict[str, Any]:
    query = request.query
    reader_text = query.get("organisation", "")
    before_text = query.get("before", "")
    start, end = _day(query.get("from", "")), _day(query.get("to", ""))
    return {
        "reader": int(reader_text) if reader_text.isascii() and reader_text.isdigit() and len(
            reader_text) <= 10 else None,
        "record_text": query.get("record", "").strip()[:64],
        "record": _record(query.get("record", "").strip()),
        "start": start.timestamp() if start else None,
        "end": (end + timedelta(days=1)).timestamp() if end else None,
        "before": int(before_text) if before_text.isascii() and before_text.isdigit() and len(
            before_text) <= 18 else 0,
    }


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def scan(request: web.Request, principal: Principal, filters: dict[str, Any],
         ) -> tuple[list[dict[str, Any]], int, int | None]:
    """Entries matching ``filters`` (at most :data:`PAGE_SIZE`), how many were read, and the
    ``before`` of the next page (None at the log's start)."""
    tracking = request.app[TRACKING]
    subject = "0x" + filters["record"].key.hex() if filters["record"] else None
    before, read = filters["before"], 0
    shown: list[dict[str, Any]] = []
    while read < SCAN_LIMIT:
        page = tracking.access_log_of(principal, before, CHUNK)
        for entry in page["entries"]:
            read += 1
            before = entry["id"]
            moment = _seconds(entry["time"])
            if filters["start"] is not None and moment < filters["start"]:
                return shown, read, None  # newest first: nothing older can match
            if ((filters["reader"] is None or entry["reader"] == filters["reader"])
                    and (subject is None or entry["subject"] == subject)
                    and (filters["end"] is None or moment < filters["end"])):
                shown.append(entry)
                if len(shown) == PAGE_SIZE:
                    return shown, read, before
        if page["next"] is None:
            return shown, read, None
    return shown, read, before


def _known(request: web.Request, principal: Principal,
           record: Reference | None) -> dict[str, Reference]:
    """Subject keys (``0x…``) of the records the owner can name: references it looked up
    (at most :data:`KNOWN_LIMIT`), those it granted, the filter's."""
    assert principal.chain_org is not None
    looked_up = request.app[READ_MODEL].known_references(principal.chain_org, KNOWN_LIMIT)
    known = {"0x" + ref.key.hex(): ref for ref in (Reference(k, v) for k, v in looked_up)}
    known.update({"0x" + g.subject.key.hex(): g.subject
                  for g in request.app[GRANT_REGISTER].page(principal.org_id, limit=1000)})
    if record is not None:
        known["0x" + record.key.hex()] = record
    return known


def _row(t: Translator, entry: dict[str, Any], known: dict[str, Reference]) -> str:
    record = known.get(entry["subject"])
    event = e(t("sharing.access.event", id=entry["eventId"]))
    what = event
    if record is not None:
        what = (f'<a href="{e(record_href(record.kind, record.value))}">'
                f"{e(record_text(t, record.kind, record.value))}</a> · {event}")
    via = t("sharing.via." + entry["via"]) if t.has("sharing.via." + entry["via"]) \
        else entry["via"]
    return f"""<tr><td data-label="{e(t("col.time"))}"><time datetime="{e(entry["time"])}">\
{e(t.when(entry["time"]))}</time></td>
<th scope=row>{e(entry["readerName"] or str(entry["reader"]))}</th>
<td data-label="{e(t("col.record"))}">{what}</td>
<td data-label="{e(t("col.allowed_by"))}">{e(via)}</td></tr>"""


async def access_log_page(request: web.Request) -> web.Response:
    """Who read my organisation's data, filtered, newest first."""
    principal = signed_in(request, "tracking:read")
    t = translator(request)
    if principal.chain_org is None:
        return shell.refused(request, t("refused.not_member"))
    filters = _filters(request)
    entries, read, following = scan(request, principal, filters)
    known = _known(request, principal, filters["record"])
    rows = "".join(_row(t, entry, known) for entry in entries)
    if not rows:
        empty = "sharing.access.none_match" if any(
            request.query.get(k) for k in ("organisation", "record", "from", "to")) \
            else "sharing.access.none"
        rows = f'<tr><td colspan=4 class=muted>{e(t(empty))}</td></tr>'
    notes = []
    if filters["record_text"] and filters["record"] is None:
        notes.append(t("sharing.access.bad_record", record=filters["record_text"]))
    if following is not None and len(entries) < PAGE_SIZE:
        notes.append(t("sharing.access.looked", count=t.number(read)))
    more = ""
    if following is not None:
        query = {k: v for k, v in request.query.items() if k != "before"}
        more = (f'<p><a class=button href="/access-log?'
                f'{e(urlencode({**query, "before": following}))}">{e(t("common.older"))}</a></p>')
    newest = ""
    if filters["before"]:
        query = {k: v for k, v in request.query.items() if k != "before"}
        newest = (f'<p><a href="/access-log?{e(urlencode(query))}">'
                  f'{e(t("common.newer"))}</a></p>')
    organisations = "".join(
        f'<option value="{e(i)}"{" selected" if i == str(filters["reader"]) else ""}>'
        f"{e(name)}</option>"
        for i, name in [("", t("common.all")), *readers_of(request, principal)])
    note = "".join(f"<p class=muted>{e(n)}</p>" for n in notes)
    body = f"""<h1>{e(t("nav.access_log"))}</h1>
<p>{e(t("access.intro"))}</p>
<form class="filters access-filters" method=get action="/access-log" aria-label="{e(t("sharing.access.filter"))}">
<div><label for=organisation>{e(t("col.organisation"))}</label>
<select id=organisation name=organisation>{organisations}</select></div>
<div><label for=record>{e(t("col.record"))}</label>
<input id=record name=record value="{e(filters["record_text"])}" maxlength=64 autocomplete=off
 spellcheck=false></div>
<div class=day><label for=from>{e(t("sharing.access.from"))}</label>
<input id=from name=from type=date value="{e(request.query.get("from", "")[:10])}"></div>
<div class=day><label for=to>{e(t("sharing.access.to"))}</label>
<input id=to name=to type=date value="{e(request.query.get("to", "")[:10])}"></div>
<input type=hidden name=lang value="{e(t.lang)}">
<button>{e(t("common.filter"))}</button>
</form>
{note}
<div class=scroll><table id=access-log>
<caption class=visually-hidden>{e(t("access.caption"))}</caption>
<thead><tr><th scope=col>{e(t("col.time"))}</th><th scope=col>{e(t("col.organisation"))}</th>
<th scope=col>{e(t("col.record"))}</th><th scope=col>{e(t("col.allowed_by"))}</th></tr></thead>
<tbody>{rows}</tbody></table></div>
{newest}{more}"""
    return render(request, page="access-log", title=t("nav.access_log"), body=body)


pages.get("/access-log")(access_log_page)


def setup(app: web.Application) -> None:
    """The "who saw my data" page (its navigation entry is the shell's, in gateway.web.pages)."""
    pages.setup(app)
