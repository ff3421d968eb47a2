// PortLedger pages, the sharing part: grant a record to an organisation and revoke it (following
// each transaction until the chain has it), and proofs for banks (ask, approve or decline with a
// reason, withdraw, export). The pages are rendered by the server (gateway/intake/pages.py,
// gateway/proofs_api/pages.py); this part only posts to the API and follows what is under way.
"use strict";

(function (P) {
  const { el, api, t } = P;
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  //: How long a pending grant or revocation is followed before the page stops asking (seconds).
  const FOLLOW_SECONDS = 120;

  function say(box, text, ok) {
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("ok", !!ok);
  }

  // An API refusal in the reader's language: its code's sentence when the catalogue has one,
  // else the status with the API's own message.
  function refusal(result) {
    const error = result.data && result.data.error;
    const code = error && error.code;
    if (code && t("sharing.error." + code) !== "sharing.error." + code) return t("sharing.error." + code);
    const text = t("sharing.failed", { status: result.status });
    return error && error.message ? text + " — " + error.message : text;
  }

  const value = (form, name) => form.elements.namedItem(name).value.trim();

  // -- sharing -------------------------------------------------------------------------------
  function progressText(receipt) {
    if (!receipt) return "";
    if (receipt.status === "final" && receipt.block !== null) {
      return t("sharing.final_in_block", { block: receipt.block });
    }
    return t("sharing.submission." + receipt.status);
  }

  // A row whose grant or revocation is under way: its submission (GET /v1/submissions/{key})
  // until final or failed, then the grant (GET /v1/grants) until the chain's state, as indexed,
  // moves; then the page is shown again (the server renders the new state).
  async function follow(row) {
    const progress = row.querySelector(".progress");
    const key = row.dataset.submission;
    let settled = !key;
    for (let i = 0; i < FOLLOW_SECONDS; i++) {
      await sleep(1000);
      if (!settled) {
        const result = await api("GET", "/v1/submissions/" + encodeURIComponent(key));
        if (result.ok) {
          progress.textContent = progressText(result.data);
          settled = result.data.status === "final" || result.data.status === "failed";
        } else if (result.status === 403 || result.status === 404) {
          settled = true;  // not readable with this role (or a key the route cannot carry)
        }
        if (!settled) continue;
      }
      const result = await api("GET", row.dataset.watch);
      if (!result.ok) continue;
      const grant = result.data.grants[0];
      if (!grant) return;
      const receipt = grant.state === "revoking" ? grant.revoke : grant.grant;
      let text = progressText(receipt);
      if (grant.state === "pending" && receipt && receipt.status === "final") {
        text += " · " + t("sharing.indexing");
      }
      progress.textContent = text;
      if (grant.state !== row.dataset.state) {
        location.reload();
        return;
      }
    }
  }

  function sharingPage() {
    const form = document.getElementById("grant-form");
    const box = form.querySelector(".message");
    const listBox = document.getElementById("grants-message");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const kind = value(form, "kind");
      const reference = value(form, "value");
      const reader = Number(value(form, "reader"));
      const until = value(form, "until");
      if (!reference || !reader) return say(box, t("sharing.need_fields"));
      const body = { subject: { kind, value: reference }, reader };
      // until the end of that day in Hong Kong
      if (until) body.expiresAt = until + "T23:59:59+08:00";
      const button = form.querySelector("button");
      button.disabled = true;
      say(box, t("sharing.sending"), true);
      const result = await api("POST", "/v1/grants", body);
      button.disabled = false;
      if (!result.ok) return say(box, refusal(result));
      say(box, t("sharing.accepted"), true);
      // the record's Share section, where the new grant is listed as pending and followed
      location.assign("/sharing?" + new URLSearchParams({ kind, value: reference }));
    });
    for (const button of document.querySelectorAll("button[data-revoke]")) {
      button.addEventListener("click", async () => {
        button.disabled = true;
        say(listBox, t("sharing.revoking"), true);
        const result = await api("DELETE", button.dataset.revoke);
        if (!result.ok) {
          button.disabled = false;
          return say(listBox, refusal(result));
        }
        location.reload();
      });
    }
    for (const row of document.querySelectorAll("tr[data-watch]")) follow(row);
  }

  // -- proofs --------------------------------------------------------------------------------
  function askForm() {
    const form = document.getElementById("ask-form");
    if (!form) return;
    const box = form.querySelector(".message");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const owner = Number(value(form, "owner"));
      const reference = value(form, "reference");
      const purpose = value(form, "purpose");
      if (!owner || !reference || !purpose) return say(box, t("sharing.need_fields"));
      say(box, t("sharing.sending"), true);
      const result = await api("POST", "/v1/proof-requests", { owner, reference, purpose });
      if (!result.ok) return say(box, refusal(result));
      say(box, t("sharing.proof.sent"), true);
      location.reload();
    });
  }

  function decideForms() {
    for (const form of document.querySelectorAll("form.decide")) {
      const box = form.querySelector(".message");
      const buttons = [...form.querySelectorAll("button")];
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const decision = event.submitter && event.submitter.value === "decline" ? "decline" : "approve";
        const note = value(form, "note");
        if (decision === "decline" && !note) return say(box, t("sharing.proof.need_reason"));
        const body = decision === "decline" ? { reason: note } : note ? { note } : undefined;
        buttons.forEach((b) => { b.disabled = true; });
        say(box, t("sharing.proof." + (decision === "decline" ? "declining" : "approving")), true);
        const path = "/v1/proof-requests/" + encodeURIComponent(form.dataset.request) + "/" + decision;
        const result = await api("POST", path, body);
        if (!result.ok) {
          buttons.forEach((b) => { b.disabled = false; });
          return say(box, refusal(result));
        }
        location.reload();
      });
    }
  }

  // The bundle comes back as the response's body: saved as it is (never parsed and re-written,
  // so the file is byte for byte what the gateway made).
  function exportForm() {
    const form = document.getElementById("export-form");
    if (!form) return;
    const box = form.querySelector(".message");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const reference = value(form, "reference");
      if (!reference) return say(box, t("sharing.need_fields"));
      const body = {
        reference,
        events: value(form, "events"),
        disclose: form.elements.namedItem("disclose").checked ? "all" : "none",
      };
      say(box, t("sharing.proof.exporting"), true);
      const response = await fetch("/v1/proofs", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch (_) { data = null; }
        return say(box, refusal({ status: response.status, data }));
      }
      const blob = await response.blob();
      const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const link = el("a", { href: URL.createObjectURL(blob), download: named ? named[1] : "portledger-proof.json", hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      say(box, t("sharing.proof.exported", { size: (blob.size / 1024).toFixed(1) }), true);
    });
  }

  function proofsPage() {
    askForm();
    decideForms();
    exportForm();
  }

  Object.assign(P.pages, { sharing: sharingPage, proofs: proofsPage });
})(window.PortLedger);
