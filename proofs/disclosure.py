"""What a proof bundle discloses beside the proofs: payloads with their keys, anchored readings.

Pure helpers a bundle builder (the node's :mod:`node.proofs`, the gateway's proof API) calls to
write the ``disclosure`` and ``anchor`` objects of ``docs/proof-format.md`` sections 5.4 and 5.5;
the verifier (:mod:`proofs.verify`, :func:`proofs.checks.check_disclosure`) checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import anchors
from proofs.bundle import LAYOUT_ENVELOPE, LAYOUT_RAW


class DisclosureError(ValueError):
    """A disclosure that cannot be written as asked (the message says why)."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def disclosure(
    plaintext: bytes,
    *,
    data_key: bytes | None = None,
    nonce: bytes | None = None,
    ciphertext_offset: int = 0,
    ciphertext_length: int | None = None,
    compression: str = "none",
    aad: bytes = b"",
    layout: str = LAYOUT_RAW,
) -> dict[str, Any]:
    """A disclosure object: the plaintext, and optionally the key that opens the ciphertext.

    Parameters
    ----------
    plaintext : bytes
        The payload whose Keccak-256 is the event's payload hash.
    data_key, nonce : bytes, optional
        The record's AES-256-GCM key (32 bytes) and, for the ``raw`` layout, its nonce; omit
        both to disclose the plaintext only (checked against the hash, not the ciphertext).
    ciphertext_offset, ciphertext_length : int
        ``raw`` layout: where the ciphertext (followed by its 16-byte tag) lies in the payload.
    compression : str
        ``raw`` layout: ``"none"`` or ``"zlib"`` (applied before encryption).
    aad : bytes
        ``raw`` layout: associated data authenticated by GCM.
    layout : str
        ``"raw"`` (the fields above say where the ciphertext is) or ``"portledger-envelope/1"``
        (the payload is a gateway envelope, which says it itself; only the data key is given).

    Raises
    ------
    DisclosureError
        An unknown layout, a raw data key without its nonce, or raw fields with the envelope
        layout.
    """
    if layout not in (LAYOUT_RAW, LAYOUT_ENVELOPE):
        raise DisclosureError(f"unknown disclosure layout {layout!r}")
    doc: dict[str, Any] = {"plaintext": _hex(plaintext)}
    if layout == LAYOUT_ENVELOPE:
        if (nonce is not None or ciphertext_offset or ciphertext_length is not None
                or compression != "none" or aad):
            raise DisclosureError("an envelope disclosure takes only the plaintext and data key")
        doc["layout"] = layout
        if data_key is not None:
            doc["dataKey"] = _hex(data_key)
        return doc
    if data_key is not None:
        if nonce is None:
            raise DisclosureError("a disclosed data key needs its nonce")
        doc.update(
            dataKey=_hex(data_key),
            nonce=_hex(nonce),
            ciphertextOffset=ciphertext_offset,
            compression=compression,
        )
        if ciphertext_length is not None:
            doc["ciphertextLength"] = ciphertext_length
        if aad:
            doc["aad"] = _hex(aad)
    return doc


def anchor_item(reading_hashes: Sequence[bytes], index: int, reading: bytes | None = None) -> dict[str, Any]:
    """The anchor object proving reading ``index`` of an anchored batch.

    Parameters
    ----------
    reading_hashes : sequence of bytes
        The batch's reading hashes, in the order anchored.
    index : int
        The reading to prove.
    reading : bytes, optional
        The reading's canonical bytes; when given, the verifier hashes them itself.
    """
    doc: dict[str, Any] = {"merkleProof": [_hex(s) for s in anchors.merkle_proof(list(reading_hashes), index)]}
    if reading is not None:
        doc["reading"] = _hex(reading)
    else:
        doc["readingHash"] = _hex(reading_hashes[index])
    return doc
