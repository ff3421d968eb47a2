"""Vyper contracts of the PortLedger chain and the Python-side facts about them.

The ``.vy`` sources in this folder are the chain's data model (consortium governance, cargo
events, bills of lading, access grants, telemetry anchors, customs declarations). They are
compiled by :mod:`contracts.build` into ``contracts/build/<Name>.json`` (ABI, deploy bytecode,
runtime bytecode, source hash); the node's genesis builder and the gateway load those artifacts.

The system contracts live at fixed addresses, pre-deployed in ``genesis.json``.
"""
