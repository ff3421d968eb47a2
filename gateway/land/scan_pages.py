"""The gate and the warehouse scan pages: a terminal's gate-out and a warehouse's receipt with the
driver's QR code.

- ``/scan/receive`` (a warehouse's user): the page opens the camera (``getUserMedia``) and
  decodes the QR code with the browser's ``BarcodeDetector`` where it has one, else with the
  vendored jsQR (``/static/vendor/jsqr/jsQR.js``, loaded only then); the token can also be
  pasted or typed. The script verifies it (``POST /v1/land/verify``), shows the job's containers
  and the seals to check (``GET /v1/land/jobs/{id}``), and records the receipt with the seal
  numbers found and condition notes (``POST /v1/land/receipts``); a seal mismatch is recorded and
  shown as one.
- ``/scan/gate-out`` (a terminal's user): the same scan, then ``POST /v1/land/gate-out``;
  a refusal is shown with its reason (forged, expired, replayed, revoked, released to another
  job, right not valid).

The pages are server-rendered forms; the script (``static/js/scan.js``) does the camera, the
decoding and the API calls, which decide everything (role, token, the job's addressee): a page
shows nothing of a job until the API answers for the signed-in user. A user whose organisation
lacks the page's role, or who may not write events, gets the refusal page.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from contracts import ROLES, roles_mask
from gateway.appkeys import ACCOUNTS
from gateway.intake.service import caller_roles, read_model
from gateway.land.model import MAX_CONDITION
from gateway.principal import Principal
from gateway.ui import shell
from gateway.ui.i18n import Translator
from gateway.ui.shell import NavItem, e, render, signed_in, translator

pages = shell.Pages()

#: The page's stylesheet part is in the one stylesheet; the decoder is loaded by the script.
DECODER = "/static/vendor/jsqr/jsQR.js"


def _form(t: Translator, mode: str) -> str:
    """The scan: camera, the typed token, the job found, the record form (filled by the script)."""
    action = t("scan.record_receipt") if mode == "receive" else t("scan.record_gate_out")
    receipt = ""
    if mode == "receive":
        receipt = f"""<div id=scan-seals></div>
<p><label for=scan-condition>{e(t("scan.condition"))}</label>
<textarea id=scan-condition name=condition maxlength={MAX_CONDITION} rows=3
 aria-describedby=scan-condition-hint></textarea>
<span class=hint id=scan-condition-hint>{e(t("scan.condition_hint"))}</span></p>"""
    return f"""<section class=card aria-labelledby=scan-camera-h id=scan-camera>
<h2 id=scan-camera-h>{e(t("scan.camera_title"))}</h2>
<p>{e(t("scan.camera_intro"))}</p>
<p class=scan-buttons><button type=button id=scan-start>{e(t("scan.camera_open"))}</button>
<button type=button id=scan-stop class=secondary hidden>{e(t("scan.camera_stop"))}</button></p>
<div class=scan-frame hidden><video id=scan-video muted playsinline
 aria-label="{e(t("scan.camera_view"))}"></video></div>
<p id=scan-status class=muted role=status aria-live=polite></p>
</section>
<section class=card aria-labelledby=scan-paste-h id=scan-paste-box>
<h2 id=scan-paste-h>{e(t("scan.paste_title"))}</h2>
<form id=scan-paste><p><label for=scan-token>{e(t("scan.token"))}</label>
<textarea id=scan-token name=token rows=3 maxlength=2900 spellcheck=false autocomplete=off
 aria-describedby=scan-token-hint></textarea>
<span class=hint id=scan-token-hint>{e(t("scan.token_hint"))}</span></p>
<p><button type=submit>{e(t("scan.check"))}</button></p></form>
</section>
<section class=card aria-labelledby=scan-job-h id=scan-job hidden>
<h2 id=scan-job-h>{e(t("scan.job_title"))}</h2>
<div id=scan-claims></div>
<form id=scan-record>{receipt}
<p><button type=submit>{e(action)}</button></p></form>
</section>
<section class=card aria-labelledby=scan-done-h id=scan-done hidden>
<h2 id=scan-done-h>{e(t("scan.done_title"))}</h2><div id=scan-outcome></div>
<p><button type=button id=scan-next>{e(t("scan.next"))}</button></p>
</section>
<p class=message role=alert></p>"""


def _page(request: web.Request, mode: str) -> web.Response:
    role = "warehouse" if mode == "receive" else "terminal"
    principal = signed_in(request, "events:write")
    t = translator(request)
    if not caller_roles(request, principal) & ROLES[role]:
        return shell.refused(request, t("scan.refused_warehouse") if mode == "receive"
                             else t("scan.refused_terminal"))
    title = t("scan.receive_title") if mode == "receive" else t("scan.gate_title")
    intro = t("scan.receive_intro") if mode == "receive" else t("scan.gate_intro")
    body = f"""<h1>{e(title)}</h1>
<p>{e(intro)}</p>
<div id=scan data-mode="{e(mode)}" data-decoder="{e(DECODER)}">{_form(t, mode)}</div>"""
    return render(request, page="scan", title=title, body=body)


@pages.get("/scan/receive")
async def scan_receive(request: web.Request) -> web.Response:
    """A warehouse receives a job's containers: scan, check the seals, record the receipt."""
    return _page(request, "receive")


@pages.get("/scan/gate-out")
async def scan_gate_out(request: web.Request) -> web.Response:
    """A terminal gates a job's containers out: scan, record the gate-out."""
    return _page(request, "gate-out")


def _may_scan(app: web.Application, role: str) -> Callable[[Principal | None], bool]:
    """Whether the navigation shows a scan page to a user: ``events:write`` and the role, as
    :func:`gateway.intake.service.caller_roles` reads it (the chain directory, else the
    account)."""

    def visible(who: Principal | None) -> bool:
        if who is None or "events:write" not in who.scopes or who.role == "driver":
            return False
        model = read_model(app)
        org = model.organisation(who.chain_org) if model is not None and who.chain_org else None
        roles = int(org.roles) if org is not None else roles_mask(
            list(app[ACCOUNTS].organisation(who.org_id).roles))
        return bool(roles & ROLES[role])

    return visible


def setup(app: web.Application) -> None:
    """The scan pages, in the navigation of a warehouse's and a terminal's users."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/scan/receive", "scan.nav_receive", 46,
                               _may_scan(app, "warehouse")))
    shell.add_nav(app, NavItem("/scan/gate-out", "scan.nav_gate", 47,
                               _may_scan(app, "terminal")))
