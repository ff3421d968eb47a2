// PortLedger pages, the tracking part. The shipment view (/track?q=) is rendered by the server
// (gateway/web/shipment.py) and needs no script beyond the shell's (viewer times). This part
// only adds a reference to "my shipments" on the landing page: POST /v1/watchlist, then the
// server-rendered page again. Removing is a shell post button (data-post).
"use strict";

(function (P) {
  const { api, t } = P;

  function dashboardPage() {
    const form = document.getElementById("watch-form");
    if (!form) return;
    const box = document.querySelector("main .message");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = form.elements.namedItem("reference");
      const value = input.value.trim();
      if (!value) { input.focus(); return; }
      const button = form.querySelector("button");
      button.disabled = true;
      const result = await api("POST", "/v1/watchlist", { reference: value });
      if (result.ok) {
        box.textContent = t("landing.done");
        box.classList.add("ok");
        location.reload();
        return;
      }
      button.disabled = false;
      box.classList.remove("ok");
      if (result.status === 422) box.textContent = t("landing.invalid", { value });
      else if (result.status === 409) box.textContent = t("landing.full", { count: form.dataset.max });
      else box.textContent = t("landing.failed", { status: result.status });
      input.focus();
    });
  }

  P.pages.dashboard = dashboardPage;
})(window.PortLedger);
