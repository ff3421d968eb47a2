// PortLedger web pages: fetch JSON from the gateway's API and build the DOM with textContent
// only (never innerHTML), so no data can turn into markup. Unsafe requests carry the session's
// CSRF token from <meta name="csrf-token">.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // replaceChildren without the null / false placeholders of optional parts.
  const fill = (node, ...children) =>
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));

  // A table cell carrying its column name, shown before the value on narrow screens.
  const td = (name, ...children) => el("td", { "data-label": name }, ...children);

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (_) { data = null; }
    }
    if (response.status === 401 && !path.startsWith("/v1/session")) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
    return { status: response.status, ok: response.ok, data };
  }

  function errorText(result) {
    const error = result.data && result.data.error;
    if (!error) return "Something went wrong (" + result.status + ").";
    const problems = error.details && error.details.problems;
    if (problems && problems.length) return error.message + " (" + problems[0].path + ")";
    return error.message;
  }

  function say(form, text, ok) {
    const box = form.querySelector(".message") || document.querySelector(".message");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("ok", !!ok);
  }

  const field = (form, name) => form.elements.namedItem(name);

  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 90) return seconds + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " days ago";
  }

  const label = (code) => (code ? String(code).replace(/[-_]/g, " ") : "unknown");

  // -- sign in, register, sign out ----------------------------------------------------------
  function signOut() {
    const button = document.getElementById("signout");
    if (!button) return;
    button.addEventListener("click", async () => {
      await api("DELETE", "/v1/session");
      location.assign("/");
    });
  }

  function loginPage() {
    const form = document.getElementById("login-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      say(form, "Signing in…");
      const result = await api("POST", "/v1/session", {
        email: field(form, "email").value,
        password: field(form, "password").value,
      });
      if (result.ok) location.assign(form.dataset.next || "/");
      else say(form, errorText(result));
    });
  }

  function registerPage() {
    const form = document.getElementById("register-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const roles = [...form.querySelectorAll('input[name="roles"]:checked')].map((i) => i.value);
      const result = await api("POST", "/v1/organisations/register", {
        organisation: {
          name: field(form, "name").value.trim(),
          roles,
          registrationNumber: field(form, "registrationNumber").value.trim(),
          country: field(form, "country").value.trim().toUpperCase(),
          address: field(form, "address").value.trim(),
          contactEmail: field(form, "contactEmail").value.trim(),
        },
        admin: { email: field(form, "email").value.trim(), password: field(form, "password").value },
      });
      if (result.ok) {
        fill(form, el("p", { class: "message ok", role: "status" },
          "Registered. An operator will verify " + result.data.organisation.name +
          "; you can sign in once it is active."));
      } else say(form, errorText(result));
    });
  }

  // -- tracking -----------------------------------------------------------------------------
  function vesselCard(vessel) {
    if (!vessel) return null;
    const rows = [];
    const estimate = (name, value) => {
      if (!value) return;
      rows.push(el("div", {},
        el("dt", {}, name),
        el("dd", {}, when(value.time) + " ",
          el("span", { class: "muted" }, "(" + label(value.classifier) + ", from " +
            (value.source || "unknown") + ", " + ago(value.freshness) + ")"))));
    };
    estimate("ETD", vessel.etd);
    estimate("ETA", vessel.eta);
    if (vessel.latestPosition) {
      const p = vessel.latestPosition;
      rows.push(el("div", {}, el("dt", {}, "Position"),
        el("dd", {}, p.lat + ", " + p.lon + " at " + when(p.time) +
          (p.source ? " (" + p.source + ")" : ""))));
    }
    return el("section", { class: "card", "aria-labelledby": "vessel-h" },
      el("h2", { id: "vessel-h" }, "Vessel " + (vessel.name || "")),
      el("p", {}, vessel.imo ? "IMO " + vessel.imo : "IMO not known"),
      el("dl", {}, rows));
  }

  function containerTable(containers) {
    if (!containers || !containers.length) return null;
    return el("section", { "aria-labelledby": "containers-h" },
      el("h2", { id: "containers-h" }, "Containers (" + containers.length + ")"),
      el("div", { class: "scroll" }, el("table", { id: "containers" },
        el("thead", {}, el("tr", {},
          ["Container", "Status", "Since", "Reefer"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, containers.map((c) => el("tr", {},
          el("th", { scope: "row" }, c.number),
          td("Status", el("span", { class: "status status-" + (c.status || "unknown") },
            label(c.status))),
          td("Since", when(c.statusTime)),
          td("Reefer", c.reefer && c.reefer.temperature !== undefined &&
            c.reefer.temperature !== null
            ? c.reefer.temperature + " °C" + (c.reefer.setpoint !== null &&
              c.reefer.setpoint !== undefined ? " (set " + c.reefer.setpoint + " °C)" : "")
            : "—")))))));
  }

  function timeline(events) {
    if (!events || !events.length) return null;
    return el("section", { "aria-labelledby": "timeline-h" },
      el("h2", { id: "timeline-h" }, "Timeline"),
      el("ol", { class: "timeline" }, events.map((ev) => el("li",
        { class: ev.retracted ? "retracted" : null },
        el("time", { datetime: ev.time }, when(ev.time)), " ",
        el("strong", {}, label(ev.type)), " ",
        el("span", { class: "muted" }, "(" + (ev.classifier || "") + ")"),
        ev.location ? " at " + ev.location : "",
        ev.subject ? " — " + ev.subject.kind + " " + ev.subject.value : "",
        el("br"),
        el("span", { class: "muted" }, "by " + (ev.publisherName || ev.publisher) +
          ", readable via " + label(ev.readableVia)),
        ev.retracted ? el("span", { class: "badge" }, "retracted") : null))));
  }

  function notFound(section, query, data) {
    const suggestions = (data && data.suggestions) || [];
    const candidates = (data && data.candidates) || [];
    fill(section, 
      el("p", { class: "message" }, (data && data.error && data.error.message) ||
        "Nothing you may see matches " + query + "."),
      candidates.length ? el("p", {}, "We read it as: " + candidates.map((c) =>
        c.kind + " " + c.value + (c.valid ? "" : " (" + (c.note || "not valid") + ")"))
        .join("; ")) : null,
      suggestions.length ? el("div", {}, el("h2", {}, "Did you mean"),
        el("ul", { class: "plain" }, suggestions.map((s) => el("li", {},
          el("a", { href: "/track?q=" + encodeURIComponent(s.value) }, s.value),
          " ", el("span", { class: "muted" }, s.kind))))) : null);
  }

  async function trackPage() {
    const section = document.getElementById("shipment");
    const query = section.dataset.query;
    if (!query) return;
    const result = await api("GET", "/v1/track/" + encodeURIComponent(query));
    if (result.status === 404) return notFound(section, query, result.data);
    if (!result.ok) {
      fill(section, el("p", { class: "message" }, errorText(result)));
      return;
    }
    const view = result.data;
    const extra = [];
    if (view.masterBillOfLading) extra.push("Master B/L " + view.masterBillOfLading);
    if (view.forwarder) extra.push("Forwarder " + view.forwarder.name);
    if (view.carrierOrganisation) extra.push("Carrier " + view.carrierOrganisation.name);
    fill(section, 
      el("h2", { id: "reference" }, label(view.kind) + " " + view.reference),
      view.carrier ? el("p", {}, "Carrier: " + view.carrier.name + " (" + view.carrier.scac + ")")
        : null,
      extra.length ? el("p", {}, extra.join(" · ")) : null,
      vesselCard(view.vessel),
      containerTable(view.containers),
      timeline(view.timeline));
  }

  // -- who saw my data ----------------------------------------------------------------------
  async function accessLogPage() {
    const body = document.querySelector("#access-log tbody");
    const older = document.getElementById("older");
    let before = 0;
    async function load() {
      const result = await api("GET", "/v1/access-log" + (before ? "?before=" + before : ""));
      if (!result.ok) return say(document, errorText(result));
      for (const entry of result.data.entries) {
        body.append(el("tr", {},
          td("Time", when(entry.time)),
          el("th", { scope: "row" }, entry.readerName || "organisation " + entry.reader),
          td("Record", "event " + entry.eventId),
          td("Allowed by", label(entry.via))));
      }
      if (!body.children.length) say(document, "Nobody else has read your records yet.", true);
      before = result.data.next ? Number(result.data.next) : 0;
      older.hidden = !before;
    }
    older.addEventListener("click", load);
    await load();
  }

  // -- API keys -----------------------------------------------------------------------------
  async function keysPage() {
    const form = document.getElementById("key-form");
    const body = document.querySelector("#keys tbody");
    async function refresh() {
      const result = await api("GET", "/v1/api-keys");
      if (!result.ok) return say(form, errorText(result));
      fill(body, ...result.data.apiKeys.map((k) => el("tr", {},
        el("th", { scope: "row" }, k.label),
        td("Id", el("code", {}, k.id)),
        td("Permissions", k.scopes.join(", ")),
        td("Created", when(k.created)),
        td("Last used", when(k.lastUsed)),
        td("Status", k.revoked ? "revoked " + when(k.revoked) : "active"),
        el("td", {}, k.revoked ? "" : el("button", {
          type: "button",
          class: "danger",
          "aria-label": "Revoke key " + k.label,
          onclick: async () => {
            if (!confirm("Revoke the key " + k.label + "? Systems using it stop at once.")) return;
            const done = await api("DELETE", "/v1/api-keys/" + encodeURIComponent(k.id));
            if (!done.ok) say(form, errorText(done));
            await refresh();
          },
        }, "Revoke")))));
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const scopes = [...form.querySelectorAll('input[name="scopes"]:checked')].map((i) => i.value);
      const result = await api("POST", "/v1/api-keys", { label: field(form, "label").value.trim(), scopes });
      if (!result.ok) return say(form, errorText(result));
      say(form, "Key created.", true);
      document.getElementById("new-key-value").textContent = result.data.key;
      document.getElementById("new-key").hidden = false;
      form.reset();
      await refresh();
    });
    await refresh();
  }

  // -- operator -----------------------------------------------------------------------------
  async function operatorPage() {
    const body = document.querySelector("#pending tbody");
    const message = document.querySelector(".message");
    async function decide(org, decision) {
      const result = await api("POST", "/v1/operator/organisations/" + org.id + "/" + decision, {});
      message.textContent = result.ok
        ? org.name + ": " + result.data.organisation.status
        : errorText(result);
      await refresh();
    }
    async function refresh() {
      const result = await api("GET", "/v1/operator/organisations?status=pending");
      if (!result.ok) { message.textContent = errorText(result); return; }
      const orgs = result.data.organisations;
      fill(body, ...orgs.map((o) => el("tr", {},
        el("th", { scope: "row" }, o.name),
        td("Registration", (o.details.country || "") + " " + (o.details.registrationNumber || ""),
          el("br"), el("span", { class: "muted" }, o.details.address || "")),
        td("Roles", o.roles.join(", ") || "none"),
        td("Contact", o.details.contactEmail || ""),
        el("td", {},
          el("button", { type: "button", onclick: () => decide(o, "verify"),
            "aria-label": "Verify " + o.name }, "Verify"), " ",
          el("button", { type: "button", class: "danger", onclick: () => decide(o, "reject"),
            "aria-label": "Reject " + o.name }, "Reject")))));
      if (!orgs.length) body.append(el("tr", {}, el("td", { colspan: 5 }, "Nobody is waiting.")));
    }
    await refresh();
  }

  // -- any page: buttons that post to the API, times in the viewer's own zone ---------------
  // <button data-post="/v1/..." data-body='{...}' data-done="…">: POST (with the CSRF token),
  // then reload the server-rendered page; a refusal is said in the page's .message box, whose
  // data-failed text (translated by the server) takes the status as {status}.
  function postButtons() {
    for (const button of document.querySelectorAll("button[data-post]")) {
      button.addEventListener("click", async () => {
        button.disabled = true;
        const box = document.querySelector(".message");
        let body;
        try { body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined; }
        catch (_) { body = undefined; }
        const result = await api("POST", button.dataset.post, body);
        if (result.ok) {
          if (box) { box.textContent = button.dataset.done || ""; box.classList.add("ok"); }
          location.reload();
        } else {
          button.disabled = false;
          if (box) box.textContent = (box.dataset.failed || "{status}").replace("{status}", String(result.status));
        }
      });
    }
  }

  // <time datetime="…Z">: the server writes the place's time (Hong Kong); when the viewer's
  // zone differs, the viewer's own time is added beside it.
  function viewerTimes() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone || zone === "Asia/Hong_Kong") return;
    const format = new Intl.DateTimeFormat(document.documentElement.lang || "en",
      { dateStyle: "medium", timeStyle: "short", timeZone: zone });
    for (const node of document.querySelectorAll("main time[datetime]")) {
      const date = new Date(node.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) continue;
      node.after(el("span", { class: "viewer-time" }, " (" + format.format(date) + " " + zone + ")"));
    }
  }

  const pages = {
    login: loginPage,
    register: registerPage,
    track: trackPage,
    "access-log": accessLogPage,
    keys: keysPage,
    operator: operatorPage,
  };

  document.addEventListener("DOMContentLoaded", () => {
    signOut();
    postButtons();
    viewerTimes();
    const page = pages[document.body.dataset.page];
    if (page) page();
  });
})();
