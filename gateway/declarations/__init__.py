"""Declarations: one submission, multiple declarations — Hong Kong TDEC, ROCARS and China ITSW
drafts from goods data uploaded once and the shipment record already in the system.

The design, the invoice columns and every rule are in ``docs/declarations.md``. Modules, bottom
to top — pure:

- :mod:`~gateway.declarations.model` — goods lines, parties, the shipment record, settings
  (rates with source and date), drafts with per-field lineage (``Field``) and issues;
- :mod:`~gateway.declarations.codes` — HKHS / China code formats, the unified social credit
  code (GB 32100-2015 check character), official numbers, vehicle registrations;
- :mod:`~gateway.declarations.hs` — HS 2022 chapters, headings, subheadings
  (``data/hs2022.csv``, ODC-PDDL; ``data/SOURCES.md``);
- :mod:`~gateway.declarations.invoice` — invoice / packing list lines from CSV or JSON with a
  per-line report of typed errors;
- :mod:`~gateway.declarations.tdec`, :mod:`~gateway.declarations.rocars`,
  :mod:`~gateway.declarations.itsw` — each authority's draft (build, then check);
- :mod:`~gateway.declarations.drafts` — all drafts of a shipment: corrections, checks,
  cross-draft consistency, the conversions used;
- :mod:`~gateway.declarations.connectors` — the connector interface (submit, status) and the
  HTTP connector of the SIMULATED authority service (``devnet/authority.py``);
- :mod:`~gateway.declarations.onchain` — the ``Declarations.vy`` calls: the declarant's filing
  (document hash), the authority's status postings.

In the gateway, on top of them:

- :mod:`~gateway.declarations.store` — ``declarations.db``: goods uploads, corrections,
  approvals, the submission outbox (idempotent by submission id) and status history;
- :mod:`~gateway.declarations.service` — the shipment record from tracking (the caller's
  view only), visibility of declarations, the submission worker (retries, polling) and the
  customs events of results;
- :mod:`~gateway.declarations.api` — ``/v1/declarations…`` and the lifecycle (``setup``).
"""
