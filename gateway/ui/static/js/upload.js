// PortLedger pages, the upload part: /upload (gateway/feeds/pages.py). A file chosen with the
// input or dropped on the drop zone (the input's label) is refused here above the API's limit
// (data-max-bytes), else sent AS THE BODY of POST /v1/feeds/{format} (the File itself: the
// browser streams it) with the visibility and the named readers chosen — first with
// ?dryRun=true (check: the per-line report, nothing recorded), then for real (submit); each accepted event's receipt is then followed with
// GET /v1/submissions/{key}, with a bounded back-off, to final or failed. Error codes get the
// catalogue's sentence (upload.code.<code>) with the server's own message beside it.
"use strict";

(function (P) {
  const { el, fill, td, api, t } = P;

  //: Report rows drawn at most (the API's report may have 10,000; errors always come first).
  const MAX_ROWS = 1000;
  //: Submissions asked about per round (the first still open, in the upload's order), and at
  //: once — well inside the API's rate limit per credential.
  const POLL_BATCH = 100;
  const POLL_PARALLEL = 6;
  //: Back-off between rounds (ms): first, factor, longest. The wait grows only after a round in
  //: which nothing moved; the page stops asking after POLL_STALE such rounds in a row (about
  //: two minutes at the longest wait) and after POLL_ROUNDS rounds in all.
  const POLL_FIRST = 500;
  const POLL_FACTOR = 1.6;
  const POLL_LONGEST = 8000;
  const POLL_STALE = 15;
  const POLL_ROUNDS = 1000;

  const lang = () => document.documentElement.lang || "en";
  const number = (value, digits) => new Intl.NumberFormat(lang(),
    { maximumFractionDigits: digits || 0, minimumFractionDigits: digits || 0 }).format(value);

  // "12,345 bytes", or "51.2 MB (53,687,092 bytes)" from a megabyte on.
  function sizeText(bytes) {
    const exact = t("upload.bytes", { count: number(bytes) });
    if (bytes < 1024 * 1024) return exact;
    return t("upload.megabytes", { value: number(bytes / (1024 * 1024), 1) }) + " (" + exact + ")";
  }

  function timeText(iso) {
    const date = new Date(iso);
    if (!iso || Number.isNaN(date.getTime())) return "";
    return new Intl.DateTimeFormat(lang(), { dateStyle: "medium", timeStyle: "short" })
      .format(date);
  }

  // The catalogue's sentence for an error code (or "Error <code>." when it has none).
  function sentence(code) {
    const key = "upload.code." + code;
    const text = t(key);
    return text === key ? t("upload.unknown_code", { code: code }) : text;
  }

  function uploadPage() {
    const form = document.getElementById("upload-form");
    const input = document.getElementById("file");
    const zone = document.getElementById("dropzone");
    const chosen = document.getElementById("chosen");
    const format = document.getElementById("format");
    const checkButton = document.getElementById("check");
    const submitButton = document.getElementById("submit");
    const message = document.getElementById("upload-message");
    const report = document.getElementById("report");
    const progress = document.getElementById("progress");
    const limit = Number(form.dataset.maxBytes);
    let file = null;
    let checked = false;  // the current file and format passed a check that accepts something
    let polling = 0;  // bumped to stop an earlier upload's polling

    function say(text, ok) {
      message.textContent = text;
      message.classList.toggle("ok", !!ok);
    }

    function tooBig(f) {
      return f.size > limit;
    }

    function choose(f) {
      file = f || null;
      checked = false;
      polling += 1;
      submitButton.disabled = true;
      report.hidden = true;
      progress.hidden = true;
      zone.classList.remove("refused");
      if (!file) { chosen.textContent = ""; say(""); return; }
      chosen.textContent = t("upload.chosen", { name: file.name, size: sizeText(file.size) });
      if (tooBig(file)) {
        zone.classList.add("refused");
        say(t("upload.too_big", { name: file.name, size: sizeText(file.size),
          limit: t("upload.megabytes", { value: number(limit / (1024 * 1024)) }) }));
      } else if (file.size === 0) {
        say(t("upload.empty_file", { name: file.name }));
      } else {
        say("");
      }
    }

    const visibility = form.querySelector(".upload-visibility");
    const maxReaders = Number(visibility.dataset.maxReaders);
    const readers = () => Array.from(visibility.querySelectorAll("input[name=readers]:checked"),
      (box) => box.value);

    input.addEventListener("change", () => choose(input.files[0]));
    // a check holds for the file, the format and the readers it was made with
    const unchecked = () => { checked = false; submitButton.disabled = true; };
    format.addEventListener("change", unchecked);
    visibility.addEventListener("change", unchecked);
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("over");
      });
    }
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    // a file dropped beside the zone must not make the browser leave the page to show it
    for (const name of ["dragover", "drop"]) {
      window.addEventListener(name, (event) => {
        if (!zone.contains(event.target)) event.preventDefault();
      });
    }
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const files = event.dataTransfer && event.dataTransfer.files;
      if (!files || !files.length) return;
      try { input.files = files; } catch (_) { /* the input keeps its own choice */ }
      choose(files[0]);
    });

    // POST the file itself as the body; the answer as {status, data}, or null when unreachable.
    async function send(dry) {
      const query = new URLSearchParams();
      if (dry) query.set("dryRun", "true");
      query.set("visibility", visibility.querySelector("input[name=visibility]:checked").value);
      if (readers().length) query.set("readers", readers().join(","));
      const path = "/v1/feeds/" + encodeURIComponent(format.value) + "?" + query.toString();
      try {
        const response = await fetch(path, {
          method: "POST",
          credentials: "same-origin",
          headers: {
            Accept: "application/json",
            "Content-Type": "application/octet-stream",
            "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
          },
          body: file,
        });
        let data = null;
        try { data = await response.json(); } catch (_) { data = null; }
        if (response.status === 401) {
          location.assign("/login?next=" + encodeURIComponent(location.pathname));
        }
        return { status: response.status, data: data };
      } catch (_) {
        return null;
      }
    }

    async function upload(dry) {
      if (!file) { say(t("upload.no_file")); input.focus(); return; }
      if (tooBig(file)) {
        say(t("upload.too_big", { name: file.name, size: sizeText(file.size),
          limit: t("upload.megabytes", { value: number(limit / (1024 * 1024)) }) }));
        return;
      }
      if (readers().length > maxReaders) {
        say(t("upload.too_many_readers", { count: number(maxReaders) }));
        return;
      }
      polling += 1;
      checkButton.disabled = true;
      submitButton.disabled = true;
      say(t(dry ? "upload.checking" : "upload.sending", { name: file.name }), true);
      const answer = await send(dry);
      checkButton.disabled = false;
      if (answer === null) { say(t("upload.network")); submitButton.disabled = !checked; return; }
      const data = answer.data || {};
      const error = data.error;
      if (!error && (answer.status === 200 || answer.status === 202)) {
        const accepted = (data.summary && data.summary.accepted) || {};
        const some = (accepted.events || 0) + (accepted.readings || 0) > 0;
        showReport(data, dry);
        if (dry) {
          checked = some;
          submitButton.disabled = !some;
          say(t(some ? "upload.checked" : "upload.checked_nothing"), some);
        } else {
          checked = false;
          say(t("upload.submitted", { events: number(accepted.events || 0),
            readings: number(accepted.readings || 0) }), true);
          follow(data);
        }
        return;
      }
      checked = false;
      const code = error ? error.code : "http-" + answer.status;
      if (error && error.details && Array.isArray(error.details.report)) {
        showReport(error.details, dry);
      }
      say(t("upload.refused", { reason: sentence(code) }) + " " +
        t("upload.server_said", { message: (error && error.message) || String(answer.status) }));
    }

    checkButton.addEventListener("click", () => upload(true));
    submitButton.addEventListener("click", () => { if (checked) upload(false); });
    // a file chosen before this ran (or kept by the browser on going back) counts too
    if (input.files && input.files.length) choose(input.files[0]);
    form.dataset.ready = "true";

    // -- the report ---------------------------------------------------------------------------
    function summaryList(data, dry) {
      const summary = data.summary || {};
      const accepted = summary.accepted || {};
      const option = format.querySelector('option[value="' + CSS.escape(data.format || "") + '"]');
      const row = (name, value, cls) => el("div", { class: cls || null },
        el("dt", {}, name), el("dd", {}, value));
      return el("dl", { class: "upload-summary" },
        row(t("upload.sum.format"), option ? option.textContent : (data.format || "")),
        row(t("upload.sum.events"), number(summary.events || 0)),
        row(t("upload.sum.readings"), number(summary.readings || 0)),
        row(t("upload.sum.errors"), number(summary.errors || 0),
          summary.errors ? "bad" : null),
        row(t("upload.sum.refused"), number(summary.refused || 0),
          summary.refused ? "bad" : null),
        row(t(dry ? "upload.sum.accepted" : "upload.sum.accepted_now"),
          t("upload.counts", { events: number(accepted.events || 0),
            readings: number(accepted.readings || 0) })));
    }

    function subjectText(subject) {
      if (!subject) return "";
      return subject.value;
    }

    // An event's type in words where the timeline's catalogue has it ("Discharged
    // (TERMINAL.DISC)"; planned and estimated ones in the "due" form), else its code.
    function eventWords(line) {
      const key = (line.classifier === "ACT" ? "timeline.act." : "timeline.due.") + line.type;
      const text = t(key, { doc: subjectText(line.subject) });
      if (text === key) return line.type;
      const words = text.replace(/\{\w+\}/g, "").trim();
      return words ? words + " (" + line.type + ")" : line.type;
    }

    //: Codes of the refusals that refuse a whole message, reported on the message's line.
    const MESSAGE_REFUSALS = ["role-not-allowed", "envelope-too-large"];

    function lineRow(line, refusedLines) {
      let kind = line.kind === "event" || line.kind === "reading" ? line.kind : "error";
      if (kind === "event" && line.line && refusedLines.has(line.line)) kind = "refused";
      const where = line.line ? number(line.line) : t("upload.whole_file");
      const segment = line.segment !== undefined && line.segment !== null ? number(line.segment)
        : "—";
      let detail;
      if (kind === "error") {
        detail = [
          el("strong", {}, sentence(line.code)), " ",
          el("code", {}, line.code), el("br"),
          el("span", { class: "muted" }, t("upload.server_said", { message: line.message })),
        ];
      } else {
        const words = eventWords(line);
        const subject = subjectText(line.subject);
        const parts = [words, words.includes(subject) ? "" : subject];
        if (line.location) parts.push(t("upload.at", { place: line.location }));
        parts.push(timeText(line.time));
        detail = parts.filter((p) => p).join(" · ");
      }
      return el("tr", { class: "kind-" + kind },
        td(t("upload.col.line"), where),
        td(t("upload.col.segment"), segment),
        td(t("upload.col.what"), el("span", { class: "chip kind-" + kind },
          t("upload.kind." + kind))),
        td(t("upload.col.detail"), detail));
    }

    function showReport(data, dry) {
      const lines = Array.isArray(data.report) ? data.report : [];
      // every error first (up to the cap), then the rest in file order
      const errors = [];
      const others = [];
      lines.forEach((line, index) => (line.kind === "error" ? errors : others).push(index));
      const keep = errors.slice(0, MAX_ROWS).concat(
        others.slice(0, Math.max(0, MAX_ROWS - errors.length)));
      keep.sort((a, b) => a - b);
      // an event of a message the API refused whole is shown as refused, not as an event
      const refusedLines = new Set(lines.filter((line) => line.kind === "error" && line.line &&
        MESSAGE_REFUSALS.includes(line.code)).map((line) => line.line));
      const heading = report.querySelector("h2");
      heading.textContent = t(dry ? "upload.report_dry" : "upload.report_real",
        { name: file ? file.name : "" });
      const table = el("table", { id: "report-lines", class: "upload-lines" },
        el("caption", { class: "visually-hidden" }, heading.textContent),
        el("thead", {}, el("tr", {}, ["upload.col.line", "upload.col.segment", "upload.col.what",
          "upload.col.detail"].map((key) => el("th", { scope: "col" }, t(key))))),
        el("tbody", {}, keep.map((index) => lineRow(lines[index], refusedLines))));
      const wrapper = el("div", { class: "scroll" }, table);
      const only = el("input", { type: "checkbox", id: "only-problems",
        onchange: () => wrapper.classList.toggle("problems-only", only.checked) });
      if (errors.length && !others.length) only.disabled = true;
      fill(document.getElementById("report-body"),
        summaryList(data, dry),
        lines.length ? el("label", { class: "check", for: "only-problems" }, only,
          t("upload.only_problems")) : null,
        lines.length ? wrapper : el("p", { class: "muted" }, t("upload.nothing")),
        keep.length < lines.length ? el("p", { class: "muted" },
          t("upload.shown", { shown: number(keep.length), count: number(lines.length) })) : null,
        data.truncated ? el("p", { class: "muted" },
          t("upload.truncated", { count: number(lines.length) })) : null);
      report.hidden = false;
    }

    // -- progress to final --------------------------------------------------------------------
    function follow(data) {
      const receipts = (data.receipts || []).map((r) => ({
        id: r.id, status: r.status, duplicate: !!r.duplicate, error: r.error || null }));
      const body = document.getElementById("progress-body");
      const stored = data.readings && (data.readings.stored || data.readings.duplicate)
        ? el("p", {}, t("upload.readings_stored", { stored: number(data.readings.stored || 0),
          duplicate: number(data.readings.duplicate || 0) }))
        : null;
      progress.hidden = false;
      if (!receipts.length) {
        fill(body, stored, el("p", { class: "muted" }, t("upload.no_events")));
        return;
      }
      const statusLine = el("p", { id: "progress-status", role: "status",
        "aria-live": "polite" });
      const bar = el("progress", { id: "progress-bar", max: receipts.length, value: 0,
        "aria-labelledby": "progress-text" });
      const barText = el("p", { id: "progress-text" });
      const counts = el("dl", { id: "progress-counts", class: "upload-summary" });
      const failures = el("div", { id: "progress-failures" });
      const duplicates = receipts.filter((r) => r.duplicate).length;
      fill(body, el("div", { class: "upload-bar" }, bar, barText), counts, statusLine,
        duplicates ? el("p", { class: "muted" }, t("upload.duplicates",
          { count: number(duplicates) })) : null,
        failures, stored);

      function draw(note) {
        const tally = { accepted: 0, sent: 0, final: 0, failed: 0 };
        for (const r of receipts) tally[r.status] = (tally[r.status] || 0) + 1;
        bar.value = tally.final;
        barText.textContent = t("upload.bar", { final: number(tally.final),
          total: number(receipts.length) });
        fill(counts, ["accepted", "sent", "final", "failed"].map((status) =>
          el("div", { class: tally[status] ? "status-" + status : null, "data-status": status },
            el("dt", {}, t("upload.status." + status)), el("dd", {}, number(tally[status])))));
        const failed = receipts.filter((r) => r.status === "failed");
        fill(failures, failed.length ? [
          el("p", { class: "message" }, t("upload.some_failed",
            { failed: number(failed.length), total: number(receipts.length) })),
          el("ul", { class: "plain" }, failed.map((r) => el("li", {},
            t("upload.failed_row", { key: r.id, reason: r.error || "—" })))),
        ] : []);
        const pending = receipts.length - tally.final - tally.failed;
        if (!pending) {
          statusLine.textContent = tally.final === receipts.length
            ? t("upload.all_final", { total: number(receipts.length) }) : "";
          statusLine.classList.toggle("done", tally.final === receipts.length);
        } else {
          fill(statusLine, note || "");
        }
        return pending;
      }

      // One receipt asked again; whether its state moved.
      async function ask(receipt) {
        const answer = await api("GET", "/v1/submissions/" + encodeURIComponent(receipt.id));
        if (!answer.ok || !answer.data || !answer.data.status) return false;
        const moved = answer.data.status !== receipt.status;
        receipt.status = answer.data.status;
        receipt.error = answer.data.error || null;
        return moved;
      }

      // Whether anything moved this round.
      async function round(run) {
        const open = receipts.filter((r) => r.status !== "final" && r.status !== "failed")
          .slice(0, POLL_BATCH);
        let moved = false;
        for (let i = 0; i < open.length; i += POLL_PARALLEL) {
          if (run !== polling) return moved;
          try {
            const answers = await Promise.all(open.slice(i, i + POLL_PARALLEL).map(ask));
            moved = moved || answers.some((a) => a);
          } catch (_) { return moved; }  // unreachable now: the next round asks again
        }
        return moved;
      }

      async function poll() {
        const run = ++polling;
        let delay = POLL_FIRST;
        let stale = 0;
        for (let rounds = 0; rounds < POLL_ROUNDS && stale < POLL_STALE; rounds += 1) {
          if (run !== polling) return;
          if (!draw(t("upload.waiting", { seconds: number(delay / 1000, 1) }))) return;
          await new Promise((resolve) => setTimeout(resolve, delay));
          if (run !== polling) return;
          if (await round(run)) {
            stale = 0;
          } else {
            stale += 1;
            delay = Math.min(POLL_LONGEST, delay * POLL_FACTOR);
          }
        }
        const pending = draw();
        if (pending && run === polling) {
          fill(statusLine, t("upload.gave_up", { pending: number(pending) }), " ",
            el("button", { type: "button", class: "secondary", id: "ask-again",
              onclick: () => poll() }, t("upload.ask_again")));
        }
      }

      poll();
    }
  }

  P.pages.upload = uploadPage;
})(window.PortLedger);
