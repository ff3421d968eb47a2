"""gateway.writepath: from an accepted upload to a final record on chain, exactly once.

- ``operations``: what an organisation asks to put on chain, its content hash, its receipt
  (pure).
- ``outbox``: the durable outbox (SQLite): operations keyed by (organisation, idempotency key),
  their signed transactions, record key versions; no payload at rest once settled.
- ``submitter``: batches, seals, signs, sends and follows the outbox's operations.
"""
