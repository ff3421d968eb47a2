// PortLedger pages, the shell's part: the helpers every page part uses (PortLedger.el, .api,
// .t, …), sign-out, post buttons, viewer times, and the dispatcher. The gateway serves every part
// of static/js/ as ONE script (/static/portledger.js, this part first): each part registers its
// page functions in PortLedger.pages[<body data-page>]. The DOM is built with textContent only
// (never innerHTML), so no data can turn into markup. Unsafe requests carry the session's CSRF
// token from <meta name="csrf-token">. Strings come from the catalogue (/i18n/<lang>.json).
"use strict";

window.PortLedger = (function () {
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

  // An API refusal in the page's language: the catalogue's sentence for its code
  // (error.<code>) when there is one, else the API's own message; the field it names after it.
  function errorText(result) {
    const error = result.data && result.data.error;
    if (!error) return t("common.failed", { status: result.status });
    const key = "error." + error.code;
    const known = error.code && strings[key];
    const text = known ? t(key) : error.message;
    const problems = error.details && error.details.problems;
    if (problems && problems.length) return text + " (" + problems[0].path + ")";
    return text;
  }

  function say(form, text, ok) {
    const box = form.querySelector(".message") || document.querySelector(".message");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("ok", !!ok);
  }

  const field = (form, name) => form.elements.namedItem(name);

  // A time in the page's language and the viewer's zone.
  const when = (iso) => {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "—";
    return new Intl.DateTimeFormat(document.documentElement.lang || "en",
      { dateStyle: "medium", timeStyle: "short" }).format(date);
  };

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 90) return t("ago.seconds", { n: seconds });
    if (seconds < 5400) return t("ago.minutes", { n: Math.round(seconds / 60) });
    if (seconds < 172800) return t("ago.hours", { n: Math.round(seconds / 3600) });
    return t("ago.days", { n: Math.round(seconds / 86400) });
  }

  const label = (code) => (code ? String(code).replace(/[-_]/g, " ") : "unknown");


  // The catalogue of the page's language (loaded once before the page's part runs).
  let strings = {};
  async function loadStrings() {
    const lang = document.documentElement.lang || "en";
    try {
      const response = await fetch("/i18n/" + encodeURIComponent(lang) + ".json",
        { credentials: "same-origin" });
      if (response.ok) strings = await response.json();
    } catch (_) { strings = {}; }
  }
  // t("key", {name: value}): the text of key with {name} filled in (the key itself if missing).
  function t(key, params) {
    const text = strings[key] || key;
    return text.replace(/\{(\w+)\}/g, (whole, name) =>
      params && params[name] !== undefined ? String(params[name]) : whole);
  }

  // -- sign in, register, sign out ----------------------------------------------------------
  function signOut() {
    const button = document.getElementById("signout");
    if (!button) return;
    button.addEventListener("click", async () => {
      await api("DELETE", "/v1/session");
      location.assign("/");
    });
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

  const pages = {};

  document.addEventListener("DOMContentLoaded", async () => {
    signOut();
    postButtons();
    viewerTimes();
    const page = pages[document.body.dataset.page];
    if (page) {
      await loadStrings();
      page();
    }
  });

  return { el, fill, td, api, errorText, say, field, when, ago, label, t, pages };
})();
