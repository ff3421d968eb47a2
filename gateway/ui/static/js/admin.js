// PortLedger pages, the administration part: an organisation's users (/users) and webhooks
// (/webhooks). The server renders the lists; this part acts through the JSON API (add, change,
// disable, remove a user; create, delete a webhook; generate a webhook secret in the browser)
// and says the outcome in the page's language. P.problem turns an API refusal into the
// catalogue's sentence for its code (admin.error.<code>), else the API's own message.
"use strict";

(function (P) {
  const { el, api, errorText, field } = P;

  function problem(result) {
    const error = result.data && result.data.error;
    if (error && error.code) {
      const key = "admin.error." + error.code;
      const problems = error.details && error.details.problems;
      const text = P.t(key, { field: problems && problems.length ? problems[0].path : "" });
      if (text !== key) return text;
    }
    if (result.status === 0 || result.status >= 500) {
      return P.t("admin.error.unavailable", { status: result.status });
    }
    return errorText(result);
  }

  // The page's (or the form's) message box.
  function tell(scope, text, ok) {
    const box = scope.querySelector(".message");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("ok", !!ok);
  }

  // Reload the server-rendered page, then say ``text`` on it (kept for this tab only).
  const SAID = "portledger.admin.said";
  function reloadSaying(text) {
    sessionStorage.setItem(SAID, text);
    location.reload();
  }
  function sayKept(page) {
    const text = sessionStorage.getItem(SAID);
    if (text) {
      sessionStorage.removeItem(SAID);
      tell(page, text, true);
    }
  }

  // -- users ----------------------------------------------------------------------------------
  function usersPage() {
    const t = P.t;
    const table = document.getElementById("users");
    const form = document.getElementById("user-form");
    const page = document.querySelector("main");

    async function patch(row, change) {
      const result = await api("PATCH", "/v1/users/" + row.dataset.user, change);
      if (!result.ok) {
        tell(page, problem(result));
        return null;
      }
      return result.data;
    }

    table.addEventListener("change", async (event) => {
      const select = event.target.closest("select[name=role]");
      if (!select) return;
      const row = select.closest("tr");
      const before = [...select.options].find((o) => o.defaultSelected);
      const user = await patch(row, { role: select.value });
      if (user) {
        for (const option of select.options) option.defaultSelected = option.value === user.role;
        tell(page, t("admin.users.role_changed",
          { email: row.dataset.email, role: t("admin.role." + user.role) }), true);
      } else if (before) select.value = before.value;
    });

    table.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const row = button.closest("tr");
      const email = row.dataset.email;
      if (button.dataset.action === "toggle") {
        const disable = button.dataset.disabled !== "true";
        const user = await patch(row, { disabled: disable });
        if (!user) return;
        button.dataset.disabled = user.disabled ? "true" : "false";
        button.textContent = t(user.disabled ? "admin.users.enable" : "admin.users.disable");
        row.querySelector(".user-status").textContent =
          t(user.disabled ? "admin.users.disabled" : "admin.users.active");
        tell(page, t(user.disabled ? "admin.users.was_disabled" : "admin.users.was_enabled",
          { email }), true);
      } else if (button.dataset.action === "remove") {
        if (!confirm(t("admin.users.confirm_remove", { email }))) return;
        const result = await api("DELETE", "/v1/users/" + row.dataset.user);
        if (!result.ok) return tell(page, problem(result));
        row.remove();
        tell(page, t("admin.users.removed", { email }), true);
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const email = field(form, "email").value.trim();
      const password = field(form, "password").value;
      if (!email || !field(form, "email").checkValidity()) {
        return tell(form, t("admin.users.need_email"));
      }
      if (password && password.length < 12) return tell(form, t("admin.users.short_password"));
      const body = { email, role: field(form, "role").value };
      if (password) body.password = password;
      const result = await api("POST", "/v1/users", body);
      if (!result.ok) return tell(form, problem(result));
      reloadSaying(t("admin.users.added", { email: result.data.email }));
    });
    sayKept(page);
  }

  // -- webhooks -------------------------------------------------------------------------------
  // A webhook secret: 32 random bytes from the browser's generator, in base64.
  function newSecret() {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    return btoa(String.fromCharCode(...bytes));
  }

  function webhooksPage() {
    const t = P.t;
    const page = document.querySelector("main");

    for (const button of document.querySelectorAll("button[data-generate]")) {
      button.addEventListener("click", () => {
        const input = document.getElementById(button.dataset.generate);
        input.value = newSecret();
        input.focus();
        input.select();
      });
    }

    for (const button of document.querySelectorAll("button[data-delete]")) {
      button.setAttribute("aria-label", t("admin.hooks.remove_label",
        { url: button.dataset.callback }));
      button.addEventListener("click", async () => {
        if (!confirm(t("admin.hooks.confirm_remove", { url: button.dataset.callback }))) return;
        const result = await api("DELETE", button.dataset.delete);
        if (!result.ok) return tell(page, problem(result));
        reloadSaying(t("admin.hooks.removed", { url: button.dataset.callback }));
      });
    }

    for (const form of document.querySelectorAll("form[data-post]")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const url = field(form, "callbackUrl").value.trim();
        const secret = field(form, "secret").value.trim();
        if (!url) return tell(form, t("admin.hooks.need_url"));
        if (!secret) return tell(form, t("admin.hooks.need_secret"));
        const body = { callbackUrl: url, secret };
        const checked = (name) =>
          [...form.querySelectorAll('input[name="' + name + '"]:checked')].map((i) => i.value);
        if (form.id === "subscription-form") {
          const types = checked("eventType");
          if (types.length) body.eventType = types;
          const box = field(form, "equipmentReference").value.trim().toUpperCase();
          if (box) body.equipmentReference = box;
        } else {
          const kinds = checked("kinds");
          if (kinds.length) body.kinds = kinds;
        }
        const result = await api("POST", form.dataset.post, body);
        if (!result.ok) return tell(form, problem(result));
        reloadSaying(t("admin.hooks.added", { url }));
      });
    }
    sayKept(page);
  }

  P.problem = problem;
  Object.assign(P.pages, { users: usersPage, webhooks: webhooksPage });
})(window.PortLedger);
