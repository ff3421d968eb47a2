"""gateway.confidential: what keeps cargo payloads private.

- ``envelope``: envelope encryption of payloads (per-record data keys, record keys, X25519 and
  reference wraps, grant wraps); pure.
- ``keystore``: each hosted organisation's keys and the gateway's own secrets, encrypted at rest.
"""
