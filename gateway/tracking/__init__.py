"""Tracking: who may read which cargo event, decryption for the caller, the shipment view, the
resolver, the access log, and the DCSA Track & Trace download.

The design (visibility rules, the view cache and when it is dropped, suggestions, grant key
wraps) is in ``docs/tracking.md``.

Modules, bottom to top:

- :mod:`~gateway.tracking.cache` — the LRU, the view cache, freshness marks and their rendering,
  :class:`~gateway.tracking.cache.TrackingSettings` (``config.extra["tracking"]``);
- :mod:`~gateway.tracking.visibility` — the visibility rule (the only place it lives) and
  decryption for the caller: ``Entitlements``, ``Reader``, ``VisibleEvent``, ``grant_context``;
- :mod:`~gateway.tracking.views` — pure view assembly: containers (``STATUS_OF``), vessel,
  declarations, timeline, the house-B/L redaction, the view's JSON encoding;
- :mod:`~gateway.tracking.suggestions` — the per-organisation index of known references for
  near-match suggestions;
- :mod:`~gateway.tracking.service` — :class:`~gateway.tracking.service.Tracking`, tying them
  together over the read model (views, event lists, resolver, access-log batching), and
  ``EventQuery``;
- :mod:`~gateway.tracking.api` — the HTTP handlers and their OpenAPI, the view cache's
  metrics, ``setup``;
- :mod:`~gateway.tracking.dcsa` — the DCSA ``GET /v2/events`` filters, matching, signed
  cursors and page requests (pure; event subscriptions use them too);
- :mod:`~gateway.tracking.dcsa_api` — the ``GET /v2/events`` handler, its OpenAPI, ``setup``.
"""
