"""Telemetry: many readings, few transactions (AIS positions, reefer readings, truck GPS).

Readings are stored in the read model and anchored in batches: each batch's Merkle root goes
on chain through the Anchors contract, so any reading is provable without a transaction each.
The design is in ``docs/telemetry.md``.

Modules:

``model``
    ``Reading``: type, time, subject, values; its report JSON and canonical bytes (pure).
``visibility``
    Who reads a reading (``entitlement``: public, owner, named, reference) and who may publish
    one (``role_problem``, mirroring ``Anchors.vy``) (pure).
``records``
    What the store gives back: ``StoredReading`` (with ``AnchorState``), ``Vessel``,
    ``BatchRecord``, ``Unanchored`` (pure).
``store``
    ``TelemetryStore``: readings (private ones sealed at rest), the MMSI → IMO join, anchor
    batches, in ``<data_dir>/telemetry.sqlite``.
``anchoring``
    Batching (``plan``, pure), the ``Anchors.anchor`` call, and the ``Anchorer`` task that forms,
    submits (through the write path's outbox) and settles batches.
``service``
    ``ingest`` (the feeds intake's entry), the visibility-filtered queries, set-up.
``api``
    ``GET /v1/vessels/{imo}/positions``, ``GET /v1/telemetry/readings[/{id}]``; ``setup(app)``.

Proof bundles of anchored readings: :mod:`gateway.proofs_api.readings`.
"""
