"""SIMULATED feeds in the real formats: writers the demo uses to speak like a port's systems.

Each module writes one format (AIS NMEA, UN/EDIFACT, Cargo-IMP, DCSA Reefer, customs status,
truck GPS) from the demo's story; every message it writes is read back by the matching
``gateway.feeds`` adapter in its tests. Nothing here is real traffic: it is SIMULATED.
"""
