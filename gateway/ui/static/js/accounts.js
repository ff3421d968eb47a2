// PortLedger pages, the accounts' part: sign in, register, API keys, operator (who saw my data is
// rendered by the server: gateway/web/sharing.py).
"use strict";

(function (P) {
  const { el, fill, td, api, errorText, say, field, when, ago, label } = P;

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

  Object.assign(P.pages, {
    login: loginPage,
    register: registerPage,
    keys: keysPage,
    operator: operatorPage,
  });
})(window.PortLedger);
