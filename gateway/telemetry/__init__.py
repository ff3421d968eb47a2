"""Telemetry: many readings, few transactions (AIS positions, reefer readings, truck GPS).

Readings are stored in the read model and anchored in batches: each batch's Merkle root goes
on chain through the Anchors contract, so any reading is provable without a transaction each.
"""
