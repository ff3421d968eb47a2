// PortLedger pages, the declarations' part: upload a shipment's goods lines (CSV or JSON file),
// correct a field, replace the goods lines, and follow open submissions until the authority's
// answer settles. Approve and submit are the shell's post buttons (data-post). Everything goes
// through the JSON API (/v1/declarations…); the DOM is built with textContent only.
(function (P) {
  "use strict";

  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // The per-line problems of a refused upload (422 invalid-invoice), else the error's message.
  function showRefusal(form, result) {
    const list = form.querySelector(".decl-upload-errors");
    const error = result.data && result.data.error;
    const rows = error && error.details && error.details.errors;
    if (!list) return;
    if (error && error.code === "invalid-invoice" && rows) {
      P.fill(list,
        P.el("li", { class: "decl-issue decl-error" },
          P.t("declarations.upload_refused", { count: error.details.count || rows.length })),
        rows.map((row) => P.el("li", { class: "decl-issue decl-error" },
          P.t("declarations.upload_error", {
            line: row.line, column: row.column || "—", message: row.message, code: row.code,
          }))));
    } else {
      P.fill(list, P.el("li", { class: "decl-issue decl-error" }, P.errorText(result)));
    }
    list.focus();
  }

  async function readInvoice(form) {
    const input = form.querySelector('input[type="file"]');
    const file = input && input.files && input.files[0];
    if (!file) return { problem: P.t("declarations.no_file") };
    const text = await file.text();
    const json = /\.json$/i.test(file.name) || file.type === "application/json";
    if (!json) return { csv: text };
    try {
      const parsed = JSON.parse(text);
      return { lines: Array.isArray(parsed) ? parsed : parsed && parsed.lines, raw: text };
    } catch (_) {
      return { problem: P.t("declarations.not_json") };
    }
  }

  function party(form, role) {
    const value = (name) => (P.field(form, role + "-" + name).value || "").trim();
    const out = {};
    for (const name of ["name", "address", "country", "uscc"]) {
      if (value(name)) out[name] = name === "country" ? value(name).toUpperCase() : value(name);
    }
    return out;
  }

  function newDeclaration() {
    const form = document.getElementById("decl-new");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const list = form.querySelector(".decl-upload-errors");
      const invoice = await readInvoice(form);
      if (invoice.problem) {
        P.fill(list, P.el("li", { class: "decl-issue decl-error" }, invoice.problem));
        return;
      }
      P.fill(list, P.el("li", {}, P.t("declarations.uploading")));
      const body = {
        reference: P.field(form, "reference").value.trim(),
        kind: P.field(form, "kind").value,
        direction: P.field(form, "direction").value,
        invoice: invoice.csv !== undefined ? { csv: invoice.csv } : { lines: invoice.lines },
        consignor: party(form, "consignor"),
        consignee: party(form, "consignee"),
      };
      const self = P.field(form, "self").value;
      if (self) body[self] = { organisation: Number(form.dataset.org) };
      const vehicle = P.field(form, "crossing-vehicle").value.trim();
      const when = P.field(form, "crossing-time").value;
      if (vehicle || when) {
        body.crossing = { vehicle, time: when ? new Date(when).toISOString() : "" };
        const point = P.field(form, "crossing-point").value.trim();
        if (point) body.crossing.controlPoint = point;
      }
      const result = await P.api("POST", "/v1/declarations", body);
      if (result.ok && result.data) {
        location.assign("/declarations/" + encodeURIComponent(result.data.id));
      } else {
        showRefusal(form, result);
      }
    });
  }

  function corrections() {
    for (const form of document.querySelectorAll("form.decl-correct")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const select = P.field(form, "path");
        const option = select.options[select.selectedIndex];
        const text = P.field(form, "value").value;
        let value = text;
        if (option && option.dataset.kind === "int" && /^\d+$/.test(text.trim())) {
          value = parseInt(text.trim(), 10);
        }
        const result = await P.api("POST",
          "/v1/declarations/" + form.dataset.shipment + "/corrections",
          { draft: form.dataset.draft, path: select.value, value });
        if (result.ok) {
          P.say(form, P.t("declarations.corrected"), true);
          location.reload();
        } else {
          P.say(form, P.errorText(result), false);
        }
      });
    }
  }

  function replaceGoods() {
    const form = document.querySelector("form.decl-goods");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const list = form.querySelector(".decl-upload-errors");
      const invoice = await readInvoice(form);
      if (invoice.problem) {
        P.fill(list, P.el("li", { class: "decl-issue decl-error" }, invoice.problem));
        return;
      }
      P.fill(list, P.el("li", {}, P.t("declarations.uploading")));
      const csv = invoice.csv !== undefined;
      const response = await fetch("/v1/declarations/" + form.dataset.shipment + "/goods", {
        method: "PUT",
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          "X-CSRF-Token": csrf(),
          "Content-Type": csv ? "text/csv" : "application/json",
        },
        body: csv ? invoice.csv : invoice.raw,
      });
      let data = null;
      try { data = await response.json(); } catch (_) { data = null; }
      if (response.ok) location.reload();
      else showRefusal(form, { status: response.status, ok: false, data });
    });
  }

  // Open submissions: ask for their status every few seconds (bounded) and show what comes back.
  function follow() {
    const section = document.getElementById("decl-subs");
    if (!section || !section.hasAttribute("data-follow")) return;
    const open = new Set(["pending", "received", "accepted", "queried"]);
    let rounds = 0;
    const timer = setInterval(async () => {
      rounds += 1;
      if (rounds > 200) { clearInterval(timer); return; }
      const result = await P.api("GET", "/v1/declarations/" + section.dataset.shipment + "/submissions");
      if (!result.ok || !result.data) return;
      let moving = false;
      for (const sub of result.data.submissions) {
        if (open.has(sub.status)) moving = true;
        const status = P.t("declarations.status." + sub.status);
        const chip = document.querySelector('[data-status-of="' + CSS.escape(sub.draft) + '"]');
        if (chip) {
          chip.className = "chip decl-status-" + sub.status;
          chip.textContent = status;
        }
        const row = section.querySelector('tr[data-submission="' + CSS.escape(sub.id) + '"]');
        if (!row) continue;
        P.fill(row.querySelector(".decl-sub-status"),
          P.el("span", { class: "chip decl-status-" + sub.status }, status),
          sub.lastError ? [P.el("br"), P.el("small", { class: "warn" },
            P.t("declarations.last_error", { error: sub.lastError }))] : null);
        row.querySelector(".decl-sub-number").textContent = sub.number || "—";
        row.querySelector(".decl-sub-answer").textContent = (sub.reasons || []).join("; ") || "—";
        row.querySelector(".decl-sub-history").textContent = (sub.history || [])
          .map((h) => P.t("declarations.status." + h.status)).join(" → ");
      }
      if (!moving) clearInterval(timer);
    }, 3000);
  }

  P.pages["declarations"] = newDeclaration;
  P.pages["declaration"] = function () {
    corrections();
    replaceGoods();
    follow();
  };
})(window.PortLedger);
