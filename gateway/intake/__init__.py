"""Upload API: cargo events (canonical and DCSA 2.2), bills of lading, grants; submission status.

Every write ends in the durable outbox and is answered ``202 Accepted`` with its receipts; the
design (idempotency keys, the checks made before anything is accepted) is in
``docs/intake.md``.

- ``model``: request and receipt schemas, limits, :class:`ItemError` (pure).
- ``rules``: parsing items, the role and sealed-size rules, the refusal of an upload (pure).
- ``service``: the effects: the caller, the member directory, the dry run, the outbox.
- ``api``: event uploads (``/v1/events``, ``/v1/events/bulk``, ``/v2/events``), submission
  status, and ``setup`` (installs every upload route).
- ``bills_of_lading``: master B/L registration and house B/L links.
- ``grants``: subject grants and revocations (the key wrap is described there), and the list of
  an owner's grants sent through this gateway (``GET /v1/grants``, ``grants.db``).
- ``pages``: ``/sharing`` — grant an organisation read access (optionally until a date), see
  and revoke one's grants, each followed to final.
"""
