"""Cargo events as the gateway reads and writes them (pure: no I/O besides loading the spec).

- ``model``: the canonical cargo event, its JSON form and schema, its plaintext encoding.
- ``identifiers``: reference numbers (ISO 6346, IMO, air waybill, UN/LOCODE, documents):
  check digits, normalisation, kind detection.
- ``dcsa``: DCSA Track & Trace 2.2 events ⇄ canonical events, validated against the spec.
- ``specs/dcsa/``: the DCSA T&T 2.2 OpenAPI document (data, Apache 2.0).
"""
