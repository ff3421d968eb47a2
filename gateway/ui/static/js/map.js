// PortLedger pages, the map's part: draws every <div class=map data-map='{…}'> the server wrote
// (gateway/ui/maps.py) with Leaflet, which the server loads only on pages that have a map
// (vendored from npm: static/vendor/). No tile server: the land is Natural Earth's, from the
// vendored world-atlas TopoJSON (fetched once per page, kept by the browser by its ETag), turned
// into GeoJSON by topojson-client and drawn as one GeoJSON layer under the vessel, its track,
// the port of call, places and trucks. Only the land around the view goes to Leaflet (the
// 1:10m coastline has 400,000 points; projecting them all takes a second at every zoom): the
// land clipped to the view grown by its own size on every side, clipped again when the map
// moves out of that. Every label comes translated in the data; text goes into
// the DOM with textContent only. The server's words about the map stay as its visually-hidden
// description; Leaflet's keyboard control pans (arrow keys) and zooms (+ / −) the focused map,
// and its markers are focusable (Enter opens the marker's details).
"use strict";

(function (P) {
  const SVG = "http://www.w3.org/2000/svg";
  const lands = {};

  // The land of a TopoJSON file as GeoJSON (one request per page, however many maps).
  function land(url) {
    if (!lands[url]) {
      lands[url] = fetch(url, { credentials: "same-origin" })
        .then((response) => {
          if (!response.ok) throw new Error("coastline " + response.status);
          return response.json();
        })
        .then((topology) => window.topojson.feature(topology, topology.objects.land));
    }
    return lands[url];
  }

  // Sutherland–Hodgman against one side of a box: the part of a ring where p[axis] >= value
  // (above) or <= value.
  function clipSide(points, axis, value, above) {
    const out = [];
    const inside = (p) => (above ? p[axis] >= value : p[axis] <= value);
    for (let i = 0; i < points.length; i++) {
      const current = points[i];
      const previous = points[(i + points.length - 1) % points.length];
      if (inside(current) !== inside(previous)) {
        const share = (value - previous[axis]) / (current[axis] - previous[axis]);
        const cut = [0, 0];
        cut[axis] = value;
        cut[1 - axis] = previous[1 - axis] + share * (current[1 - axis] - previous[1 - axis]);
        out.push(cut);
      }
      if (inside(current)) out.push(current);
    }
    return out;
  }

  function extent(ring) {
    let west = 180, south = 90, east = -180, north = -90;
    for (let i = 0; i < ring.length; i++) {
      const lon = ring[i][0], lat = ring[i][1];
      if (lon < west) west = lon;
      if (lon > east) east = lon;
      if (lat < south) south = lat;
      if (lat > north) north = lat;
    }
    return [west, south, east, north];
  }

  // The land's polygons inside box [west, south, east, north], clipped to it (a GeoJSON
  // MultiPolygon).
  function landIn(geojson, box) {
    const [west, south, east, north] = box;
    const kept = [];
    for (const feature of geojson.features || [geojson]) {
      const geometry = feature.geometry || {};
      const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
        : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
      for (const polygon of polygons) {
        const [w, s, e, n] = extent(polygon[0]);
        if (e < west || w > east || n < south || s > north) continue;
        if (w >= west && e <= east && s >= south && n <= north) { kept.push(polygon); continue; }
        const rings = polygon.map((ring) => clipSide(clipSide(clipSide(clipSide(
          ring, 0, west, true), 0, east, false), 1, south, true), 1, north, false));
        if (rings[0].length >= 3) kept.push(rings.filter((ring) => ring.length >= 3));
      }
    }
    return { type: "Feature", properties: {}, geometry: { type: "MultiPolygon", coordinates: kept } };
  }

  // Draws the land around the view, again whenever the view leaves the part drawn.
  function drawLand(map, geojson) {
    let layer = null;
    let region = null;
    const redraw = () => {
      if (region && region.contains(map.getBounds())) return;
      const grown = map.getBounds().pad(1);
      region = L.latLngBounds([Math.max(grown.getSouth(), -90), Math.max(grown.getWest(), -180)],
        [Math.min(grown.getNorth(), 90), Math.min(grown.getEast(), 180)]);
      const box = [region.getWest(), region.getSouth(), region.getEast(), region.getNorth()];
      if (layer) layer.remove();
      layer = L.geoJSON(landIn(geojson, box), { pane: "land", interactive: false,
        className: "map-land",
        style: { color: "#9c9580", weight: 0.8, fillColor: "#ece8dc", fillOpacity: 1 } }).addTo(map);
    };
    redraw();
    map.on("moveend", redraw);
  }

  // A marker's glyph: an arrow turned to the course (CSSOM style, allowed by the CSP), or a dot.
  function glyph(kind, course) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "-12 -12 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const shape = document.createElementNS(SVG, "path");
    const moving = (kind === "vessel" || kind === "truck") && typeof course === "number";
    if (moving) {
      shape.setAttribute("d", "M0,-10 L7,9 L0,5 L-7,9 Z");
      svg.style.transform = "rotate(" + course + "deg)";
    } else if (kind === "port") {
      shape.setAttribute("d", "M0,-9 A9,9 0 1,1 -0.01,-9 Z M0,-4 A4,4 0 1,0 0.01,-4 Z");
      shape.setAttribute("fill-rule", "evenodd");
    } else if (kind === "vessel" || kind === "truck") {
      shape.setAttribute("d", "M0,-7 A7,7 0 1,1 -0.01,-7 Z");
    } else {
      shape.setAttribute("d", "M-7,-7 H7 V7 H-7 Z");
    }
    svg.append(shape);
    return svg;
  }

  function marker(map, layer, kind, side) {
    const icon = L.divIcon({
      className: "map-marker map-" + kind,
      html: glyph(kind, layer.course),
      iconSize: [26, 26],
      iconAnchor: [13, 13],
      tooltipAnchor: side === "bottom" ? [0, 12] : [12, 0],
      popupAnchor: [0, -12],
    });
    const found = L.marker([layer.lat, layer.lon], { icon, keyboard: true, riseOnHover: true });
    // the names stay shown beside the markers; on a narrow map not the port of call's (on hover
    // and focus), which would cover the vessel's
    const permanent = kind !== "port" || map.getSize().x >= 500;
    found.bindTooltip(P.el("span", {}, layer.name || layer.label),
      { permanent, direction: side, className: "map-label map-label-" + kind });
    found.bindPopup(P.el("p", { class: "map-popup" }, layer.label));
    found.addTo(map);
    const element = found.getElement();
    element.setAttribute("aria-label", layer.label);
    element.dataset.kind = kind;
    return found;
  }

  // The live option: a map whose box carries data-live (a land job's positions stream,
  // gateway/land/live.py) moves its truck marker as positions arrive, and tells the page
  // (events "portledger:position" and "portledger:state" on the box).
  function follow(map, box, found) {
    const source = new EventSource(box.dataset.live, { withCredentials: true });
    let truck = found;
    source.addEventListener("position", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (typeof data.lat !== "number" || typeof data.lon !== "number") return;
      const position = P.t("map.position", {
        lat: P.t(data.lat >= 0 ? "map.lat_n" : "map.lat_s", { value: Math.abs(data.lat).toFixed(3) }),
        lon: P.t(data.lon >= 0 ? "map.lon_e" : "map.lon_w", { value: Math.abs(data.lon).toFixed(3) }),
      });
      let label = P.t("map.truck_at", { plate: data.vehicle || "", position, when: P.when(data.time) });
      if (typeof data.speed === "number") {
        label = P.t("map.list", { first: label,
          rest: P.t("map.speed_kmh", { speed: Math.round(data.speed * 3.6) }) });
      }
      const layer = { lat: data.lat, lon: data.lon, name: data.vehicle || "", label,
        course: typeof data.heading === "number" ? data.heading : null };
      if (truck) {
        truck.setLatLng([data.lat, data.lon]);
        truck.setIcon(L.divIcon({ className: "map-marker map-truck", html: glyph("truck", layer.course),
          iconSize: [26, 26], iconAnchor: [13, 13], tooltipAnchor: [12, 0], popupAnchor: [0, -12] }));
        truck.setTooltipContent(P.el("span", {}, layer.name));
        truck.setPopupContent(P.el("p", { class: "map-popup" }, label));
        truck.getElement().setAttribute("aria-label", label);
        truck.getElement().dataset.kind = "truck";
      } else {
        truck = marker(map, layer, "truck", "right");
      }
      if (!map.getBounds().contains(truck.getLatLng())) map.panTo(truck.getLatLng());
      box.dataset.truck = data.lat + "," + data.lon;
      box.dispatchEvent(new CustomEvent("portledger:position", { detail: data }));
    });
    source.addEventListener("state", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (data.state !== "picked-up" && data.state !== "planned") source.close();
      box.dispatchEvent(new CustomEvent("portledger:state", { detail: data }));
    });
    window.addEventListener("pagehide", () => source.close());
  }

  function draw(box) {
    let settings;
    try { settings = JSON.parse(box.dataset.map); } catch (_) { return; }
    const layers = settings.layers || {};
    const text = box.querySelector(".map-text");
    const keys = P.el("p", { class: "visually-hidden", id: box.id + "-keys" }, settings.keys);
    const canvas = P.el("div", {
      class: "map-canvas", role: "region", "aria-label": settings.label,
      "aria-describedby": (text ? text.id + " " : "") + keys.id,
    });
    box.append(canvas, keys);
    if (text) text.classList.add("visually-hidden");
    box.classList.add("map-ready");

    const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    const map = L.map(canvas, {
      zoomControl: false, attributionControl: false, keyboard: true, zoomSnap: 0.5,
      minZoom: 1, maxZoom: settings.maxZoom + 2, worldCopyJump: false,
      zoomAnimation: !still, fadeAnimation: !still, markerZoomAnimation: !still,
    });
    L.control.zoom({ zoomInTitle: settings.zoomIn, zoomOutTitle: settings.zoomOut }).addTo(map);
    L.control.attribution({ prefix: false }).addAttribution(settings.attribution).addTo(map);
    map.createPane("land").classList.add("map-land-pane");

    // the view first (Leaflet adds layers to a map only once it has one), then the layers
    const vessel = layers.vessel;
    const places = (layers.port ? [layers.port] : []).concat(layers.places || []);
    const points = [];
    if (vessel) points.push(...(vessel.track || []), [vessel.lat, vessel.lon]);
    for (const item of places.concat(layers.trucks || [])) points.push([item.lat, item.lon]);
    if (points.length) {
      // room for the labels beside the markers, less on a phone
      const side = Math.round(Math.min(90, canvas.clientWidth * 0.12));
      map.fitBounds(L.latLngBounds(points), { padding: [side, 40], maxZoom: settings.maxZoom });
    } else {
      map.setView([22.3, 114.15], settings.maxZoom - 2);
    }
    if (vessel && vessel.track && vessel.track.length > 1) {
      L.polyline(vessel.track, { className: "map-track", interactive: false, color: "#0b5cad",
        weight: 3, dashArray: "6 6" }).addTo(map);
    }
    if (vessel) marker(map, vessel, "vessel", "right");
    if (layers.port) marker(map, layers.port, "port", "bottom");
    for (const place of layers.places || []) {
      marker(map, place, place.kind === "port" ? "port" : "place", "bottom");
    }
    const trucks = (layers.trucks || []).map((truck) => marker(map, truck, "truck", "right"));
    if (box.dataset.live && window.EventSource) follow(map, box, trucks[0] || null);

    land(settings.land).then((geojson) => {
      drawLand(map, geojson);
      box.dataset.land = "drawn";
    }).catch(() => { box.dataset.land = "failed"; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!window.L || !window.topojson) return;  // no map assets on this page: the text stays
    for (const box of document.querySelectorAll(".map[data-map]")) draw(box);
  });
})(window.PortLedger);
