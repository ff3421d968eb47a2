// The gate and the warehouse scan pages (/scan/gate-out, /scan/receive): the camera
// (getUserMedia) and a QR decoder — the browser's BarcodeDetector where it has one, else the
// vendored jsQR, loaded only then — or a typed token; then POST /v1/land/verify, the job's
// containers and seals (GET /v1/land/jobs/{id}), and the record: POST /v1/land/gate-out or
// POST /v1/land/receipts. Every refusal is shown with its reason. The DOM is built with
// P.el / textContent only.
(function (P) {
  "use strict";

  // Frames looked at per second, and how long the camera looks before it stops by itself.
  const SCAN_EVERY_MS = 200;
  const SCAN_FOR_MS = 120000;

  function refusal(result) {
    const error = result.data && result.data.error;
    const code = error && error.code;
    const key = "scan.refusal." + code;
    const reason = code && P.t(key) !== key ? P.t(key) : P.errorText(result);
    const detail = error && error.message && error.message !== reason ? error.message : "";
    return { code: code || "", text: P.t("scan.refused", { reason }), detail };
  }

  // A decoder: (video, canvas) -> Promise<string|null>.
  async function decoder(root) {
    if ("BarcodeDetector" in window) {
      try {
        const formats = await window.BarcodeDetector.getSupportedFormats();
        if (formats.includes("qr_code")) {
          const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
          return async (video) => {
            const found = await detector.detect(video);
            return found.length ? found[0].rawValue : null;
          };
        }
      } catch (_) { /* fall back to jsQR */ }
    }
    if (!window.jsQR) {
      await new Promise((resolve, reject) => {
        const script = P.el("script", { src: root.dataset.decoder });
        script.addEventListener("load", resolve);
        script.addEventListener("error", reject);
        document.head.append(script);
      });
    }
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d", { willReadFrequently: true });
    return async (video) => {
      const width = video.videoWidth, height = video.videoHeight;
      if (!width || !height) return null;
      canvas.width = width; canvas.height = height;
      context.drawImage(video, 0, 0, width, height);
      const image = context.getImageData(0, 0, width, height);
      const code = window.jsQR(image.data, width, height, { inversionAttempts: "dontInvert" });
      return code ? code.data : null;
    };
  }

  function page() {
    const root = document.getElementById("scan");
    if (!root) return;
    const mode = root.dataset.mode;
    const video = document.getElementById("scan-video");
    const frame = root.querySelector(".scan-frame");
    const status = document.getElementById("scan-status");
    const start = document.getElementById("scan-start");
    const stop = document.getElementById("scan-stop");
    const jobBox = document.getElementById("scan-job");
    const claimsBox = document.getElementById("scan-claims");
    const record = document.getElementById("scan-record");
    const done = document.getElementById("scan-done");
    const outcome = document.getElementById("scan-outcome");
    const message = root.querySelector(".message");
    let stream = null, timer = null, token = null, job = null;

    const say = (text, ok, detail) => {
      P.fill(message, text, detail ? P.el("span", { class: "detail" }, " — " + detail) : null);
      message.classList.toggle("ok", !!ok);
    };

    function stopCamera() {
      if (timer) clearTimeout(timer);
      timer = null;
      if (stream) stream.getTracks().forEach((track) => track.stop());
      stream = null;
      video.srcObject = null;
      frame.hidden = true; stop.hidden = true; start.hidden = false;
    }

    async function startCamera() {
      say("");
      status.textContent = P.t("scan.status_starting");
      let read;
      try {
        read = await decoder(root);
      } catch (_) {
        status.textContent = P.t("scan.status_decoder");
        return;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia(
          { video: { facingMode: "environment" }, audio: false });
      } catch (error) {
        status.textContent = P.t("scan.status_no_camera", { reason: error.name || "error" });
        return;
      }
      video.srcObject = stream;
      frame.hidden = false; stop.hidden = false; start.hidden = true;
      await video.play().catch(() => null);
      status.textContent = P.t("scan.status_looking");
      const until = Date.now() + SCAN_FOR_MS;
      const look = async () => {
        if (!stream) return;
        let text = null;
        try { text = await read(video); } catch (_) { text = null; }
        if (text) {
          stopCamera();
          status.textContent = P.t("scan.status_found");
          await check(text.trim());
        } else if (Date.now() > until) {
          stopCamera();
          status.textContent = P.t("scan.status_timeout");
        } else {
          timer = setTimeout(look, SCAN_EVERY_MS);
        }
      };
      look();
    }

    function row(label, value) {
      return [P.el("dt", {}, label), P.el("dd", {}, value)];
    }

    const unix = (seconds) => new Date(seconds * 1000).toISOString();

    function seals(list) {
      return list && list.length ? list.join(", ") : P.t("scan.none");
    }

    async function check(text) {
      jobBox.hidden = true; done.hidden = true;
      if (!text.startsWith("PL1.")) { say(P.t("scan.not_a_token")); return; }
      status.textContent = P.t("scan.status_checking");
      const verified = await P.api("POST", "/v1/land/verify", { token: text });
      if (!verified.ok) {
        const r = refusal(verified);
        status.textContent = "";
        say(r.text, false, r.detail);
        return;
      }
      status.textContent = "";
      token = text;
      const claims = verified.data.claims;
      const found = await P.api("GET", "/v1/land/jobs/" + encodeURIComponent(claims.job));
      job = found.ok ? found.data : null;
      const expected = (job && job.seals) || {};
      const rights = {};
      for (const right of (job && job.rights) || []) rights[right.container] = right;
      const state = verified.data.state;
      const facts = P.el("dl", { class: "scan-facts" },
        row(P.t("scan.job"), claims.job),
        row(P.t("scan.vehicle"), claims.veh || "—"),
        row(P.t("scan.ccrn"), claims.ccrn || "—"),
        row(P.t("scan.window"), P.t("scan.window_value", {
          from: P.when(unix(claims.nbf)), to: P.when(unix(claims.exp)) })),
        row(P.t("scan.state"), P.t("scan.state." + state)));
      const used = verified.data.usedAt || {};
      const warnings = [];
      if (mode === "gate-out" && used["gate-out"]) warnings.push(P.t("scan.used_gate_out"));
      if (mode === "receive" && used.receipt) warnings.push(P.t("scan.used_receipt"));
      const boxes = (claims.c || []).map((number) => {
        const right = rights[number];
        const lines = [P.el("strong", {}, number)];
        lines.push(P.el("span", {}, expected[number] && expected[number].length
          ? P.t("scan.expected", { seals: expected[number].join(", ") }) : P.t("scan.no_expected")));
        if (mode === "gate-out" && right) {
          lines.push(P.el("span", { class: right.valid ? "ok" : "warn" }, right.valid
            ? P.t("scan.right", { basis: right.basis })
            : P.t("scan.right_invalid", { reasons: (right.reasons || []).join("; ") })));
        }
        return P.el("li", {}, lines);
      });
      P.fill(claimsBox, facts,
        warnings.map((w) => P.el("p", { class: "warn" }, w)),
        P.el("h3", {}, P.t("scan.containers")), P.el("ul", { class: "scan-boxes" }, boxes));
      if (mode === "receive") {
        const inputs = (claims.c || []).map((number, i) => P.el("p", {},
          P.el("label", { for: "scan-seal-" + i }, P.t("scan.seals_found", { container: number })),
          P.el("input", { id: "scan-seal-" + i, name: "seal", "data-container": number,
            autocomplete: "off", "aria-describedby": "scan-seals-hint", maxlength: 200 })));
        P.fill(document.getElementById("scan-seals"), inputs,
          P.el("span", { class: "hint", id: "scan-seals-hint" }, P.t("scan.seals_hint")));
      }
      say("");
      jobBox.hidden = false;
      jobBox.querySelector("button[type=submit]").focus();
    }

    async function submit(event) {
      event.preventDefault();
      if (!token) return;
      const button = record.querySelector("button[type=submit]");
      button.disabled = true;
      let result;
      if (mode === "receive") {
        const found = {};
        for (const input of record.querySelectorAll("input[data-container]")) {
          const numbers = input.value.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean);
          if (numbers.length) found[input.dataset.container] = numbers;
        }
        const condition = document.getElementById("scan-condition").value.trim();
        result = await P.api("POST", "/v1/land/receipts", { token, seals: found, condition });
      } else {
        result = await P.api("POST", "/v1/land/gate-out", { token });
      }
      button.disabled = false;
      if (!result.ok) {
        const r = refusal(result);
        say(r.text, false, r.detail);
        root.dataset.refused = r.code;
        return;
      }
      const data = result.data;
      const lines = [];
      if (mode === "receive") {
        lines.push(P.el("p", { class: "ok" }, P.t("scan.recorded_receipt",
          { job: data.job, time: P.when(data.time) })));
        if (data.mismatch) lines.push(P.el("p", { class: "warn mismatch" }, P.t("scan.mismatch")));
        lines.push(P.el("ul", {}, (data.seals || []).map((s) => P.el("li",
          { class: s.match === false ? "warn" : "" },
          s.match === null ? P.t("scan.seal_unchecked", { container: s.container })
            : P.t(s.match ? "scan.seal_match" : "scan.seal_mismatch", { container: s.container,
              expected: seals(s.expected), found: seals(s.found) })))));
      } else {
        lines.push(P.el("p", { class: "ok" }, P.t("scan.recorded_gate_out",
          { job: data.job, time: P.when(data.time) })));
        lines.push(P.el("ul", {}, (data.containers || []).map((c) => P.el("li", {},
          P.t("scan.gated_out", { container: c.container, basis: c.right && c.right.basis })))));
      }
      lines.push(P.el("p", { class: "muted" }, P.t("scan.pending")));
      P.fill(outcome, lines);
      root.dataset.recorded = data.job;
      jobBox.hidden = true; done.hidden = false;
      say("");
      done.querySelector("h2").focus();
    }

    start.addEventListener("click", startCamera);
    stop.addEventListener("click", () => { stopCamera(); status.textContent = ""; });
    document.getElementById("scan-paste").addEventListener("submit", (event) => {
      event.preventDefault();
      check(document.getElementById("scan-token").value.trim());
    });
    record.addEventListener("submit", submit);
    document.getElementById("scan-next").addEventListener("click", () => {
      token = null; job = null; done.hidden = true;
      document.getElementById("scan-token").value = "";
      start.focus();
    });
    done.querySelector("h2").setAttribute("tabindex", "-1");
  }

  P.pages["scan"] = page;
})(window.PortLedger);
