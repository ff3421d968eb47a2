// PortLedger pages, the driver's part (gateway/land/driver_pages.py): the drivers' sign-in with
// a one-time code; the pages a driver saw kept for use offline in a Cache Storage cache of
// their own ("portledger-driver-<id>", which the service worker answers a failed navigation
// from), other drivers' caches and queues deleted, all of them at sign-out; sharing the truck's
// position: navigator.geolocation.watchPosition, positions queued in localStorage (bounded: the
// oldest go first) and posted in batches with their original times every N seconds or M
// positions, kept while offline and sent when the connection is back, stopping by itself at
// delivery or the window's end. And a job's page for its other readers: the truck's line in
// words, updated from the map's live stream (static/js/map.js).
"use strict";

(function (P) {
  const CACHE = "portledger-driver-";
  const QUEUE = "portledger-driver-queue-";
  const SHARING = "portledger-driver-sharing-";
  const FINAL = ["delivered", "cancelled"];

  // The API without P.api's turn to the e-mail sign-in on a 401: a driver whose session ended
  // is told so on the page (positions stay queued) and signs in again at /driver.
  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["X-CSRF-Token"] = document.querySelector('meta[name="csrf-token"]').content;
      headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }

  async function dropCaches(keep) {
    if (!("caches" in window)) return;
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name.startsWith(CACHE) && name !== keep)
      .map((name) => caches.delete(name)));
  }

  function dropStored(keepDriver) {
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const key = localStorage.key(i);
      if (!key || !(key.startsWith(QUEUE) || key.startsWith(SHARING))) continue;
      if (keepDriver && (key.startsWith(QUEUE + keepDriver + "-") ||
                         key.startsWith(SHARING + keepDriver + "-"))) continue;
      localStorage.removeItem(key);
    }
  }

  // Keep this page (and others of the driver's) in the driver's cache, fetched afresh; when
  // the network cannot be reached, the page shown is the kept copy: say so.
  async function keep(driver, paths) {
    await dropCaches(CACHE + driver);
    dropStored(driver);
    if (!("caches" in window)) return;
    const cache = await caches.open(CACHE + driver);
    for (const path of paths) {
      let answer;
      try {
        answer = await fetch(path, { credentials: "same-origin", cache: "no-store" });
      } catch (_) {
        const note = document.querySelector(".offline-note");
        if (note) note.hidden = false;
        return;
      }
      if (answer.ok && !answer.redirected) await cache.put(path, answer);
    }
  }

  // Sign-out on a driver's page: the kept pages and queued positions go first.
  function signOut() {
    const button = document.getElementById("signout");
    if (!button) return;
    button.addEventListener("click", async (event) => {
      event.stopImmediatePropagation();
      button.disabled = true;
      await dropCaches(null);
      dropStored(null);
      await P.api("DELETE", "/v1/session");
      location.assign("/driver");
    }, { capture: true });
  }

  function signIn() {
    const form = document.getElementById("driver-sign-in");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const phone = P.field(form, "phone").value.trim();
      const code = P.field(form, "code").value.trim();
      if (!phone || !/^[0-9]{6,8}$/.test(code)) {
        P.say(form, P.t("driver.sign_in.incomplete"));
        return;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const response = await fetch("/v1/land/driver-session", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ phone, code }),
        });
        let data = null;
        try { data = await response.json(); } catch (_) { data = null; }
        if (response.ok) {
          await dropCaches(CACHE + data.driver.id);
          dropStored(String(data.driver.id));
          location.assign("/driver");
          return;
        }
        const error = (data && data.error && data.error.code) || "";
        P.say(form, error === "bad-code" ? P.t("driver.sign_in.bad_code")
          : error === "code-throttled" ? P.t("driver.sign_in.throttled")
            : P.errorText({ status: response.status, data }));
      } catch (_) {
        P.say(form, P.t("driver.share.offline"));
      }
      button.disabled = false;
    });
  }

  function home() {
    const box = document.querySelector(".driver-home");
    signOut();
    if (!box || !box.dataset.driver) return;
    const jobs = Array.from(box.querySelectorAll("a[href^='/driver/jobs/']"))
      .map((a) => a.getAttribute("href"));
    keep(box.dataset.driver, ["/driver", ...jobs]);
  }

  // -- sharing --------------------------------------------------------------------------------
  function job() {
    const box = document.querySelector(".driver-job");
    signOut();
    const id = box.dataset.job;
    const driver = box.dataset.driver;
    keep(driver, [location.pathname, "/driver"]);
    const key = QUEUE + driver + "-" + id;
    const flag = SHARING + driver + "-" + id;
    const max = Number(box.dataset.queueMax) || 2000;
    const size = Number(box.dataset.batchSize) || 20;
    const every = (Number(box.dataset.batchSeconds) || 10) * 1000;
    const from = Date.parse(box.dataset.from);
    const until = Date.parse(box.dataset.until);
    let state = box.dataset.state;
    const start = document.getElementById("share-start");
    const stopButton = document.getElementById("share-stop");
    const status = document.getElementById("share-status");
    const queued = document.getElementById("share-queue");
    let watch = null;
    let timer = null;
    let sending = false;
    let dropped = 0;

    const load = () => {
      try { return JSON.parse(localStorage.getItem(key) || "[]"); } catch (_) { return []; }
    };
    const save = (items) => {
      try { localStorage.setItem(key, JSON.stringify(items)); } catch (_) { /* full */ }
    };
    const say = (text) => { status.textContent = text; };
    function showQueue() {
      const count = load().length;
      const parts = [];
      if (count) parts.push(P.t("driver.share.queued", { n: count }));
      if (dropped) parts.push(P.t("driver.share.dropped", { n: dropped }));
      queued.textContent = parts.join(" ");
      box.dataset.queued = String(count);
    }

    function add(position) {
      const c = position.coords;
      const item = { time: new Date(position.timestamp).toISOString(), lat: c.latitude,
        lon: c.longitude };
      if (typeof c.speed === "number" && c.speed >= 0 && c.speed <= 100) item.speed = c.speed;
      if (typeof c.heading === "number" && c.heading >= 0 && c.heading <= 360) {
        item.heading = c.heading;
      }
      if (typeof c.accuracy === "number" && c.accuracy >= 0) {
        item.accuracy = Math.min(c.accuracy, 100000);
      }
      const items = load();
      items.push(item);
      while (items.length > max) { items.shift(); dropped += 1; }
      save(items);
      showQueue();
      if (Date.parse(item.time) > until) { stop("window"); return; }
      if (!navigator.onLine) say(P.t("driver.share.offline"));
      else say(P.t("driver.share.on", { when: P.when(item.time) }));
      if (items.length >= size) flush();
    }

    function stop(why) {
      if (watch !== null) navigator.geolocation.clearWatch(watch);
      watch = null;
      if (timer !== null) clearInterval(timer);
      timer = null;
      localStorage.removeItem(flag);
      start.hidden = false;
      stopButton.hidden = true;
      box.dataset.sharing = "off";
      const text = { delivered: "driver.share.ended_delivery", cancelled: "driver.share.ended_cancelled",
        window: "driver.share.ended_window" }[why];
      if (text) {
        say(P.t(text));
        start.disabled = true;
      } else {
        say(P.t("driver.share.off"));
      }
      flush();
    }

    async function checkState() {
      const answer = await call("GET", "/v1/land/jobs/" + id).catch(() => null);
      if (answer && answer.ok && answer.data) {
        state = answer.data.state;
        if (FINAL.includes(state)) stop(state);
      }
    }

    async function flush() {
      if (sending) return;
      const items = load();
      if (!items.length) return;
      if (!navigator.onLine) { say(P.t("driver.share.offline")); return; }
      sending = true;
      try {
        const batch = items.slice(0, 500);
        let result;
        try {
          result = await call("POST", "/v1/land/jobs/" + id + "/positions", { positions: batch });
        } catch (_) {
          say(P.t("driver.share.offline"));
          return;
        }
        if (result.ok || (result.status >= 400 && result.status < 500 &&
                          ![401, 408, 429].includes(result.status))) {
          save(load().slice(batch.length));  // sent, or refused for good: not kept
        }
        if (result.ok) {
          const data = result.data || {};
          const refused = data.refused || [];
          const sent = (data.accepted || 0) + (data.duplicates || 0);
          let text = P.t("driver.share.sent", { n: sent, when: P.when(new Date().toISOString()) });
          if (refused.length) {
            text += " " + P.t("driver.share.refused", { n: refused.length,
              reason: refused[0].reason });
          }
          say(text);
          box.dataset.sent = String(Number(box.dataset.sent || 0) + sent);
          const codes = refused.map((r) => r.code);
          if (codes.includes("after-delivery")) stop("delivered");
          else if (codes.includes("after-window")) stop("window");
          else checkState();
        } else if (result.status === 401) {
          say(P.t("driver.share.signed_out"));
        } else {
          say(P.t("driver.share.refused_all", { reason: P.errorText(result) }));
          if ([403, 404, 409].includes(result.status)) stop(null);
        }
      } finally {
        sending = false;
        showQueue();
      }
    }

    function begin() {
      if (!("geolocation" in navigator)) { say(P.t("driver.share.unavailable")); return; }
      if (FINAL.includes(state)) { stop(state); return; }
      if (Date.now() > until) { stop("window"); return; }
      if (Date.now() < from) { say(P.t("driver.share.not_yet", { when: P.when(box.dataset.from) })); return; }
      localStorage.setItem(flag, "1");
      start.hidden = true;
      stopButton.hidden = false;
      box.dataset.sharing = "on";
      say(P.t("driver.share.waiting"));
      watch = navigator.geolocation.watchPosition(add, (error) => {
        if (error.code === error.PERMISSION_DENIED) {
          stop(null);
          say(P.t("driver.share.denied"));
        } else {
          say(P.t("driver.share.no_fix"));
        }
      }, { enableHighAccuracy: true, maximumAge: 5000, timeout: 60000 });
      timer = setInterval(() => {
        if (Date.now() > until) stop("window");
        else flush();
      }, every);
    }

    start.addEventListener("click", begin);
    stopButton.addEventListener("click", () => stop(null));
    window.addEventListener("online", flush);
    window.addEventListener("offline", () => say(P.t("driver.share.offline")));
    showQueue();
    if (load().length) flush();
    if (localStorage.getItem(flag) === "1" && !FINAL.includes(state)) begin();
  }

  // -- a job's page for its other readers: the truck's line follows the live map --------------
  function landJob() {
    const box = document.querySelector(".land-job");
    const line = document.getElementById("truck-now");
    const map = box.querySelector(".map[data-live]");
    if (!map) {
      // no position yet: wait for the first one, then show the page with its map
      if (!window.EventSource || !box.dataset.stream) return;
      const source = new EventSource(box.dataset.stream, { withCredentials: true });
      source.addEventListener("position", () => { source.close(); location.reload(); });
      source.addEventListener("state", () => source.close());
      window.addEventListener("pagehide", () => source.close());
      return;
    }
    map.addEventListener("portledger:position", (event) => {
      const data = event.detail;
      let text = typeof data.speed === "number"
        ? P.t("driver.truck.at", { when: P.when(data.time), speed: Math.round(data.speed * 3.6) })
        : P.t("driver.truck.at_when", { when: P.when(data.time) });
      if (data.eta && data.eta.arrived) text += " " + P.t("driver.truck.arrived");
      else if (data.eta) {
        text += " " + P.t("driver.truck.eta", { when: P.when(data.eta.time),
          km: Number(data.eta.distanceKm).toFixed(1) });
      }
      line.textContent = text;
    });
    map.addEventListener("portledger:state", (event) => {
      const state = event.detail.state;
      line.textContent = P.t("driver.truck.state", { state: P.t("driver.state." + state) });
    });
  }

  P.pages["driver-sign-in"] = signIn;
  P.pages.driver = home;
  P.pages["driver-job"] = job;
  P.pages["land-job"] = landJob;
})(window.PortLedger);
