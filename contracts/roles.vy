#pragma version ~=0.4.3
"""
@title Roles of member organisations
@custom:contract-name roles
@license Apache-2.0
@notice The bitmask of roles an organisation holds in the port community.
        An organisation may hold several roles (a terminal operator that
        also runs a warehouse holds `TERMINAL | WAREHOUSE`). Every contract
        that checks a role imports these constants, so the bit values are
        written once; `contracts.ROLES` is their Python mirror.
"""

OPERATOR: constant(uint256) = 1
TERMINAL: constant(uint256) = 2
CARRIER: constant(uint256) = 4
AGENT: constant(uint256) = 8
FORWARDER: constant(uint256) = 16
HAULIER: constant(uint256) = 32
WAREHOUSE: constant(uint256) = 64
AIRLINE: constant(uint256) = 128
CUSTOMS: constant(uint256) = 256
BANK: constant(uint256) = 512
AUDITOR: constant(uint256) = 1024

# Every defined role bit; a roles value outside this mask is refused.
ALL: constant(uint256) = 2047
