"""The upload page: a file in any feed format, checked line by line, submitted, followed to final.

``/upload`` is rendered on the server (the form, the formats and the limits); the page's script
(``static/js/upload.js``) does the rest against the very API an integrator uses:

1. the reader chooses a file (the file input, or dropped on the drop zone, which is the input's
   label) and a format (detected by default; the list is :data:`gateway.feeds.formats.FORMATS`,
   each named in the catalogue); a file above :data:`~gateway.feeds.model.MAX_FEED_BYTES` is
   refused before anything is sent; and who may read the events: the organisations named
   (the directory's other members, at most :data:`MAX_READERS`) and, if chosen, whoever holds a
   reference in them (the API's ``visibility`` and ``readers``);
2. **check**: ``POST /v1/feeds/{format}?dryRun=true`` with the file itself as the body (the
   browser streams it) answers the per-line report — events, readings, errors with line,
   segment, code and message, and the refusals of the caller's roles per message — shown with a
   catalogue sentence per known error code beside the server's own message;
3. **submit**: the same file without ``dryRun``; each accepted event's receipt is then followed
   with ``GET /v1/submissions/{key}`` (bounded back-off) from accepted to submitted to final, or
   failed with its reason.

Only users who may upload see the page and its navigation entry: the ``events:write`` scope and
an organisation that is a member on chain (what :func:`gateway.intake.service.writer` asks of
the API's callers). The API's checks still decide each upload; the page shows nothing the API
would not answer the same user.
"""

from __future__ import annotations

from aiohttp import web

from contracts import ROLES
from gateway.feeds import formats
from gateway.feeds.intake import MAX_REPORT_LINES
from gateway.feeds.model import MAX_FEED_BYTES
from gateway.intake.pages import readers_of
from gateway.intake.service import caller_roles
from gateway.principal import Principal
from gateway.ui import shell
from gateway.ui.i18n import Translator
from gateway.ui.shell import NavItem, e, render, signed_in, translator

pages = shell.Pages()

#: The scope an upload needs (the API's :func:`gateway.intake.service.writer`).
SCOPE = "events:write"

#: Most named readers of an upload (the API's ``readers`` query:
#: :func:`gateway.intake.service.visibility_query`).
MAX_READERS = 8


def may_upload(principal: Principal | None) -> bool:
    """Whether a signed-in user sees the page: the scope, and an organisation on chain."""
    return (principal is not None and principal.via != "api_key" and SCOPE in principal.scopes
            and principal.chain_org is not None)


def megabytes(t: Translator, size: int) -> str:
    """A limit in whole megabytes (``50 MB``) in the reader's language."""
    return t("upload.megabytes", value=t.number(size / (1024 * 1024)))


def format_options(t: Translator) -> str:
    """The format choice: detected by default, then every format the gateway reads."""
    options = [f'<option value=auto selected>{e(t("upload.format.auto"))}</option>']
    for name in formats.FORMATS:
        key = "upload.format." + name
        options.append(f'<option value="{e(name)}">{e(t(key) if t.has(key) else name)}'
                       "</option>")
    return "".join(options)


def visibility_fields(t: Translator, readers: list[tuple[str, str]]) -> str:
    """Who may read the events: named readers only, or anyone holding a reference; and the
    members named as readers (the directory's active members, by name)."""
    modes = "".join(
        f'<label class=check><input type=radio name=visibility value={mode}'
        f'{" checked" if mode == "named" else ""}> {e(t("upload.visibility." + mode))}</label>'
        for mode in ("named", "reference"))
    boxes = "".join(
        f'<label class=check><input type=checkbox name=readers value="{e(value)}"> {e(name)}'
        "</label>" for value, name in readers)
    listed = (f'<details id=readers-box><summary>{e(t("upload.readers", count=MAX_READERS))}'
              f"</summary><div class=readers>{boxes}</div></details>") if readers else ""
    return (f'<fieldset class=upload-visibility data-max-readers="{MAX_READERS}">'
            f'<legend>{e(t("upload.visibility"))}</legend>{modes}{listed}</fieldset>')


def roles_text(t: Translator, roles: int) -> str:
    """The organisation's roles in words (``Terminal, Shipping line``)."""
    names = [t("role." + name) if t.has("role." + name) else name
             for name, bit in ROLES.items() if roles & bit]
    return ", ".join(names) if names else t("upload.no_roles")


@pages.get("/upload")
async def upload_page(request: web.Request) -> web.Response:
    """Choose a file, check it, submit it and follow it to final."""
    principal = signed_in(request, SCOPE)
    t = translator(request)
    if principal.chain_org is None:
        return shell.refused(request, t("refused.not_member"))
    roles = roles_text(t, caller_roles(request, principal))
    body = f"""<h1>{e(t("upload.title"))}</h1>
<p>{e(t("upload.intro"))}</p>
<p class=muted>{e(t("upload.roles", roles=roles))}</p>
<form id=upload-form class=upload data-max-bytes="{MAX_FEED_BYTES}"
 data-max-lines="{MAX_REPORT_LINES}" aria-describedby=upload-limit>
<label class=dropzone id=dropzone for=file>
<span class=drop-title>{e(t("upload.drop"))}</span>
<span class=muted id=upload-limit>{e(t("upload.limit", size=megabytes(t, MAX_FEED_BYTES)))}</span>
<input type=file id=file name=file>
</label>
<p id=chosen class=chosen aria-live=polite></p>
<div class=upload-format><label for=format>{e(t("upload.format"))}</label>
<select id=format name=format>{format_options(t)}</select></div>
{visibility_fields(t, readers_of(request, principal))}
<div class=upload-buttons>
<button type=button id=check>{e(t("upload.check"))}</button>
<button type=button id=submit class=secondary disabled>{e(t("upload.submit"))}</button>
</div>
<p class=message id=upload-message role=status aria-live=polite></p>
</form>
<section id=report class=upload-report aria-labelledby=report-h hidden>
<h2 id=report-h tabindex=-1>{e(t("upload.report"))}</h2>
<div id=report-body></div>
</section>
<section id=progress class=upload-progress aria-labelledby=progress-h hidden>
<h2 id=progress-h tabindex=-1>{e(t("upload.progress"))}</h2>
<p class=muted>{e(t("upload.progress_intro"))}</p>
<div id=progress-body></div>
</section>"""
    return render(request, page="upload", title=t("upload.title"), body=body)


def setup(app: web.Application) -> None:
    """The upload page and its navigation entry (for users who may upload)."""
    pages.setup(app)
    shell.add_nav(app, NavItem("/upload", "upload.nav", 30, may_upload))
