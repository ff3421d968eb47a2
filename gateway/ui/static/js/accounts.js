// PortLedger pages, the accounts' part: sign in, register, API keys, operator (who saw my data is
// rendered by the server: gateway/web/sharing.py).
"use strict";

(function (P) {
  const { el, fill, td, api, errorText, say, field, when, ago, label } = P;

  function loginPage() {
    const form = document.getElementById("login-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      say(form, P.t("login.signing_in"));
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
          P.t("register.done", { name: result.data.organisation.name })));
      } else say(form, errorText(result));
    });
  }

  // An API refusal in the page's language (admin.js's P.problem; the API's message without it).
  const problem = (result) => (P.problem ? P.problem(result) : errorText(result));

  // A time as the server writes them: Hong Kong time in the page's language ("—" when none).
  const LOCALES = { en: "en-GB", "zh-Hant": "zh-HK", "zh-Hans": "zh-CN" };
  const stamp = (iso) => (iso
    ? new Intl.DateTimeFormat(LOCALES[document.documentElement.lang] || "en-GB",
      { dateStyle: "medium", timeStyle: "short", timeZone: "Asia/Hong_Kong" })
      .format(new Date(iso)) + " HKT"
    : P.t("common.unknown"));

  // -- API keys -----------------------------------------------------------------------------
  async function keysPage() {
    const form = document.getElementById("key-form");
    const body = document.querySelector("#keys tbody");
    const t = P.t;
    async function revoke(k) {
      if (!confirm(t("admin.keys.confirm_revoke", { label: k.label }))) return;
      const done = await api("DELETE", "/v1/api-keys/" + encodeURIComponent(k.id));
      say(form, done.ok ? t("admin.keys.revoked_one", { label: k.label }) : problem(done), done.ok);
      await refresh();
    }
    async function refresh() {
      const result = await api("GET", "/v1/api-keys");
      if (!result.ok) return say(form, problem(result));
      fill(body, ...result.data.apiKeys.map((k) => el("tr", {},
        el("th", { scope: "row" }, k.label),
        td(t("col.id"), el("code", {}, k.id)),
        td(t("keys.permissions"), k.scopes.map((s) => t("admin.scope." + s)).join(", ")),
        td(t("col.created"), stamp(k.created)),
        td(t("col.last_used"), k.lastUsed ? stamp(k.lastUsed) : t("admin.keys.never")),
        td(t("col.status"), k.revoked
          ? t("admin.keys.revoked", { when: stamp(k.revoked) })
          : t("admin.keys.active")),
        el("td", {}, k.revoked ? "" : el("button", {
          type: "button",
          class: "danger",
          "aria-label": t("admin.keys.revoke_label", { label: k.label }),
          onclick: () => revoke(k),
        }, t("admin.keys.revoke"))))));
      if (!result.data.apiKeys.length) {
        body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, t("admin.keys.none"))));
      }
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const labelText = field(form, "label").value.trim();
      const scopes = [...form.querySelectorAll('input[name="scopes"]:checked')].map((i) => i.value);
      if (!labelText) return say(form, t("admin.keys.need_label"));
      if (!scopes.length) return say(form, t("admin.keys.need_scope"));
      const result = await api("POST", "/v1/api-keys", { label: labelText, scopes });
      if (!result.ok) return say(form, problem(result));
      say(form, t("admin.keys.created"), true);
      document.getElementById("new-key-value").textContent = result.data.key;
      document.getElementById("new-key").hidden = false;
      form.reset();
      await refresh();
    });
    await refresh();
  }

  // -- operator -----------------------------------------------------------------------------
  async function operatorPage() {
    const t = P.t;
    const pending = document.querySelector("#pending tbody");
    const all = document.querySelector("#organisations tbody");
    const status = document.getElementById("org-status");
    const message = document.querySelector(".message");
    // a role's name (the operator's own role is not one an organisation registers with)
    const roleName = (r) => (r === "operator" ? t("admin.operator.role")
      : t("role." + r) === "role." + r ? r : t("role." + r));
    const roles = (o) => o.roles.map(roleName).join(", ") || t("admin.operator.no_roles");
    const registration = (o) => [
      (o.details.country || "") + " " + (o.details.registrationNumber || ""),
      el("br"), el("span", { class: "muted" }, o.details.address || "")];
    function tell(text, ok) {
      message.textContent = text;
      message.classList.toggle("ok", !!ok);
    }
    async function decide(org, decision, reason) {
      const note = reason.value.trim();
      if (decision === "reject" && !note) {
        tell(t("admin.operator.need_reason", { name: org.name }));
        reason.focus();
        return;
      }
      const result = await api("POST", "/v1/operator/organisations/" + org.id + "/" + decision,
        note ? { note } : {});
      if (result.ok) {
        const state = result.data.organisation.status;
        tell(t("admin.operator.decided", { name: org.name, status: t("admin.org_status." + state) }), true);
      } else tell(problem(result));
      await refresh();
    }
    function pendingRow(o) {
      const reasonId = "reason-" + o.id;
      const reason = el("input", { id: reasonId, name: "note", maxlength: 1000, autocomplete: "off" });
      return el("tr", {},
        el("th", { scope: "row" }, o.name),
        td(t("col.registration"), registration(o)),
        td(t("col.roles"), roles(o)),
        td(t("col.contact"), o.details.contactEmail || ""),
        el("td", { class: "decision" },
          el("label", { for: reasonId }, t("admin.operator.reason")),
          reason,
          el("div", { class: "actions" },
            el("button", { type: "button", onclick: () => decide(o, "verify", reason),
              "aria-label": t("admin.operator.verify_label", { name: o.name }) }, t("admin.operator.verify")),
            el("button", { type: "button", class: "danger", onclick: () => decide(o, "reject", reason),
              "aria-label": t("admin.operator.reject_label", { name: o.name }) }, t("admin.operator.reject")))));
    }
    async function refresh() {
      const waiting = await api("GET", "/v1/operator/organisations?status=pending");
      if (!waiting.ok) return tell(problem(waiting));
      const orgs = waiting.data.organisations;
      fill(pending, ...orgs.map(pendingRow));
      if (!orgs.length) {
        pending.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, t("admin.operator.nobody"))));
      }
      const chosen = status.value;
      const listed = await api("GET", "/v1/operator/organisations" +
        (chosen ? "?status=" + encodeURIComponent(chosen) : ""));
      if (!listed.ok) return tell(problem(listed));
      fill(all, ...listed.data.organisations.map((o) => el("tr", {},
        el("th", { scope: "row" }, o.name),
        td(t("col.status"), el("span", { class: "chip org-" + o.status }, t("admin.org_status." + o.status))),
        td(t("col.roles"), roles(o)),
        td(t("col.registration"), registration(o)),
        td(t("admin.operator.member"), o.chainOrg === null || o.chainOrg === undefined
          ? t("admin.operator.not_member") : t("admin.operator.member_id", { id: o.chainOrg })))));
      if (!listed.data.organisations.length) {
        all.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, t("admin.operator.none"))));
      }
    }
    status.addEventListener("change", refresh);
    await refresh();
  }

  Object.assign(P.pages, {
    login: loginPage,
    register: registerPage,
    keys: keysPage,
    operator: operatorPage,
  });
})(window.PortLedger);
