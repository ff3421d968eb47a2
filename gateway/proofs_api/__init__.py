"""Proof bundles through the gateway: owners export them, banks request them.

A *proof bundle* (``docs/proof-format.md``) proves cargo events to someone who trusts nothing
but the network's ``genesis.json``: a bank financing the cargo checks it offline with
``portledger verify-proof``. The gateway makes bundles for the organisations it hosts:

Export
    ``POST /v1/proofs``: an organisation names a shipment reference it can see (master B/L,
    house B/L, container, ...). The events are those of the caller's shipment view
    (:meth:`gateway.tracking.Tracking.shipment_of`, so exactly what tracking shows it):
    its **own** events (the default) or every event it can see. The bundle itself comes from
    the gateway's node (``portledger_getProof`` over :mod:`gateway.nodeclient`, one call for
    up to :data:`MAX_EVENTS` events), located by the read model's transaction hash and
    block-wide log index of each event.

Selective disclosure
    For events the caller **owns** and names, the gateway adds a disclosure (section 5.4 of the
    format, layout ``portledger-envelope/1``): the plaintext payload and, unless the caller
    says not to, the record's data key (:func:`gateway.confidential.envelope.data_key_of` with the
    owner's master secret). The verifier parses the envelope on chain, decrypts its content
    with that key and checks ``keccak(plaintext)`` against the payload hash. A data key opens
    that one record only. Events of other publishers are proven (inclusion, seals) but never
    disclosed. A bundle names an event's subject reference (``subjectReference``) only for
    events about the reference asked for and for disclosed events, so it does not spell out
    container numbers the caller chose not to disclose.

Proof requests
    A bank (any organisation; the use case is a lender) asks an owner for a bundle:
    ``POST /v1/proof-requests`` with the owner's chain organisation id, the reference, a
    purpose and which events and disclosures it would like. The owner lists its incoming
    requests and approves (with its own choice of events and disclosures: the bundle is made
    then and stored) or declines with a reason; the requester may withdraw a pending request.
    The requester lists its requests and downloads the bundle once approved. Every state
    change (requested, approved, declined, withdrawn, downloaded) is recorded with who and when,
    and both parties see that history; each download by the requester is also written to the
    owner's access log ("who saw my data", ``via = "proof"``) for every event of the bundle.

Anchored readings
    ``POST /v1/proofs/readings/{id}``: a bundle of one telemetry reading the caller may read
    (:mod:`gateway.telemetry`): the ``Anchored`` log of its batch and the reading's canonical
    bytes with their Merkle proof (section 5.5 of the format).

Storage: ``<data_dir>/proofs.db`` (SQLite, WAL): requests, their history, and approved
bundles (zlib-compressed JSON). Every query is parameterised and scoped to the two parties.
Scopes: ``proofs:export`` (export, and decide requests about the organisation's data) and
``proofs:request`` (ask others, download what they approved).

Modules:

``bundles``
    What to prove (``Selection``), making a bundle from the node (``make_bundle``) with the
    owner's disclosures.
``store``
    ``ProofRequestStore``: proof requests, their history and approved bundles in ``proofs.db``.
``readings``
    ``make_reading_bundle``: the bundle of an anchored telemetry reading.
``api``
    ``/v1/proofs``, ``/v1/proofs/readings/{id}`` and ``/v1/proof-requests`` with their
    OpenAPI; ``setup(app)``.

Pages: ``pages`` (``/proofs``: a bank asks for a proof and downloads it; the owner approves
or declines with a reason, or exports one itself).
"""
