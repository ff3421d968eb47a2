// PortLedger's service worker (served as /sw.js, scope "/"): keeps the pages' shell — the one
// stylesheet, the one script, the catalogue, the icons, the manifest and the offline page — so
// the app opens without a connection. It never stores API answers or pages: a navigation goes
// to the network, and only when that fails is a driver's kept page (driverPage) or else the
// offline page (which names nobody) shown. The
// gateway writes the shell's version into VERSION, so a new shell installs a new cache and the
// old one is deleted.
"use strict";

const VERSION = "__VERSION__";
const CACHE = "portledger-shell-" + VERSION;
const LANGUAGES = ["en", "zh-Hant", "zh-Hans"];
const OFFLINE = (lang) => "/offline?lang=" + lang;
// The request URLs of the shell (pathname + search), kept in the cache.
const SHELL = [
  "/static/portledger.css",
  "/static/portledger.js",
  "/manifest.webmanifest",
  "/static/pwa/icon.svg",
  "/static/pwa/icon-192.png",
  "/static/pwa/icon-512.png",
  "/static/pwa/icon-maskable-512.png",
  ...LANGUAGES.map((lang) => "/i18n/" + lang + ".json"),
  ...LANGUAGES.map(OFFLINE),
];
// Where the language of the last page seen is remembered (for the offline page).
const LANG_KEY = "/__portledger/lang";

self.addEventListener("install", (event) => {
  // without cookies: nothing cached may depend on who is signed in
  event.waitUntil(caches.open(CACHE).then((cache) =>
    cache.addAll(SHELL.map((url) => new Request(url, { credentials: "omit" }))))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names
      .filter((name) => name.startsWith("portledger-shell-") && name !== CACHE)
      .map((name) => caches.delete(name))))
    .then(() => self.clients.claim()));
});

self.addEventListener("message", (event) => {
  const lang = event.data && event.data.lang;
  if (LANGUAGES.includes(lang)) {
    event.waitUntil(caches.open(CACHE).then((cache) =>
      cache.put(LANG_KEY, new Response(lang, { headers: { "Content-Type": "text/plain" } }))));
  }
});

async function offlinePage(url) {
  const cache = await caches.open(CACHE);
  let lang = url.searchParams.get("lang");
  if (!LANGUAGES.includes(lang)) {
    const remembered = await cache.match(LANG_KEY);
    lang = remembered ? await remembered.text() : "en";
  }
  return (await cache.match(OFFLINE(LANGUAGES.includes(lang) ? lang : "en"))) ||
    new Response("offline", { status: 503, headers: { "Content-Type": "text/plain" } });
}

// A page a signed-in driver's own script kept (gateway/land/driver_pages.py: a cache per
// driver, "portledger-driver-<id>", deleted at sign-out); this worker never writes to it.
async function driverPage(request) {
  for (const name of await caches.keys()) {
    if (!name.startsWith("portledger-driver-")) continue;
    const kept = await (await caches.open(name)).match(request, { ignoreSearch: true });
    if (kept) return kept;
  }
  return null;
}

// A shell file: the network's (kept for later), else the cached copy.
async function shellFile(request) {
  const cache = await caches.open(CACHE);
  try {
    const answer = await fetch(request);
    if (answer.ok) await cache.put(request, answer.clone());
    return answer;
  } catch (error) {
    const kept = await cache.match(request);
    if (kept) return kept;
    throw error;
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(fetch(request).catch(() => driverPage(request)
      .then((kept) => kept || offlinePage(url))));
  } else if (SHELL.includes(url.pathname + url.search)) {
    event.respondWith(shellFile(request));
  }
  // anything else (the API above all) is left to the browser: never cached here
});
