// PortLedger pages, the installable app's part: registers the service worker (/sw.js, which
// keeps the shell for use offline), tells it the page's language (for its offline page), and
// the offline page's "try again".
"use strict";

(function (P) {
  if ("serviceWorker" in navigator) {
    window.addEventListener("load", () => {
      navigator.serviceWorker.register("/sw.js", { scope: "/" })
        .then(() => navigator.serviceWorker.ready)
        .then((registration) => {
          if (registration.active) {
            registration.active.postMessage({ lang: document.documentElement.lang || "en" });
          }
        })
        .catch(() => undefined);  // the pages work without it
    });
  }

  function offlinePage() {
    document.getElementById("retry").addEventListener("click", () => location.reload());
    window.addEventListener("online", () => location.reload());
  }

  P.pages.offline = offlinePage;
})(window.PortLedger);
