// PortLedger pages, the tracking part: the shipment view of /track?q=.
"use strict";

(function (P) {
  const { el, fill, td, api, errorText, say, field, when, ago, label } = P;

  // -- tracking -----------------------------------------------------------------------------
  function vesselCard(vessel) {
    if (!vessel) return null;
    const rows = [];
    const estimate = (name, value) => {
      if (!value) return;
      rows.push(el("div", {},
        el("dt", {}, name),
        el("dd", {}, when(value.time) + " ",
          el("span", { class: "muted" }, "(" + label(value.classifier) + ", from " +
            (value.source || "unknown") + ", " + ago(value.freshness) + ")"))));
    };
    estimate("ETD", vessel.etd);
    estimate("ETA", vessel.eta);
    if (vessel.latestPosition) {
      const p = vessel.latestPosition;
      rows.push(el("div", {}, el("dt", {}, "Position"),
        el("dd", {}, p.lat + ", " + p.lon + " at " + when(p.time) +
          (p.source ? " (" + p.source + ")" : ""))));
    }
    return el("section", { class: "card", "aria-labelledby": "vessel-h" },
      el("h2", { id: "vessel-h" }, "Vessel " + (vessel.name || "")),
      el("p", {}, vessel.imo ? "IMO " + vessel.imo : "IMO not known"),
      el("dl", {}, rows));
  }

  function containerTable(containers) {
    if (!containers || !containers.length) return null;
    return el("section", { "aria-labelledby": "containers-h" },
      el("h2", { id: "containers-h" }, "Containers (" + containers.length + ")"),
      el("div", { class: "scroll" }, el("table", { id: "containers" },
        el("thead", {}, el("tr", {},
          ["Container", "Status", "Since", "Reefer"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, containers.map((c) => el("tr", {},
          el("th", { scope: "row" }, c.number),
          td("Status", el("span", { class: "status status-" + (c.status || "unknown") },
            label(c.status))),
          td("Since", when(c.statusTime)),
          td("Reefer", c.reefer && c.reefer.temperature !== undefined &&
            c.reefer.temperature !== null
            ? c.reefer.temperature + " °C" + (c.reefer.setpoint !== null &&
              c.reefer.setpoint !== undefined ? " (set " + c.reefer.setpoint + " °C)" : "")
            : "—")))))));
  }

  function timeline(events) {
    if (!events || !events.length) return null;
    return el("section", { "aria-labelledby": "timeline-h" },
      el("h2", { id: "timeline-h" }, "Timeline"),
      el("ol", { class: "timeline" }, events.map((ev) => el("li",
        { class: ev.retracted ? "retracted" : null },
        el("time", { datetime: ev.time }, when(ev.time)), " ",
        el("strong", {}, label(ev.type)), " ",
        el("span", { class: "muted" }, "(" + (ev.classifier || "") + ")"),
        ev.location ? " at " + ev.location : "",
        ev.subject ? " — " + ev.subject.kind + " " + ev.subject.value : "",
        el("br"),
        el("span", { class: "muted" }, "by " + (ev.publisherName || ev.publisher) +
          ", readable via " + label(ev.readableVia)),
        ev.retracted ? el("span", { class: "badge" }, "retracted") : null))));
  }

  function notFound(section, query, data) {
    const suggestions = (data && data.suggestions) || [];
    const candidates = (data && data.candidates) || [];
    fill(section, 
      el("p", { class: "message" }, (data && data.error && data.error.message) ||
        "Nothing you may see matches " + query + "."),
      candidates.length ? el("p", {}, "We read it as: " + candidates.map((c) =>
        c.kind + " " + c.value + (c.valid ? "" : " (" + (c.note || "not valid") + ")"))
        .join("; ")) : null,
      suggestions.length ? el("div", {}, el("h2", {}, "Did you mean"),
        el("ul", { class: "plain" }, suggestions.map((s) => el("li", {},
          el("a", { href: "/track?q=" + encodeURIComponent(s.value) }, s.value),
          " ", el("span", { class: "muted" }, s.kind))))) : null);
  }

  async function trackPage() {
    const section = document.getElementById("shipment");
    const query = section.dataset.query;
    if (!query) return;
    const result = await api("GET", "/v1/track/" + encodeURIComponent(query));
    if (result.status === 404) return notFound(section, query, result.data);
    if (!result.ok) {
      fill(section, el("p", { class: "message" }, errorText(result)));
      return;
    }
    const view = result.data;
    const extra = [];
    if (view.masterBillOfLading) extra.push("Master B/L " + view.masterBillOfLading);
    if (view.forwarder) extra.push("Forwarder " + view.forwarder.name);
    if (view.carrierOrganisation) extra.push("Carrier " + view.carrierOrganisation.name);
    fill(section, 
      el("h2", { id: "reference" }, label(view.kind) + " " + view.reference),
      view.carrier ? el("p", {}, "Carrier: " + view.carrier.name + " (" + view.carrier.scac + ")")
        : null,
      extra.length ? el("p", {}, extra.join(" · ")) : null,
      vesselCard(view.vessel),
      containerTable(view.containers),
      timeline(view.timeline));
  }

  P.pages.track = trackPage;
})(window.PortLedger);
