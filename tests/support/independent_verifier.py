"""An independent verifier of `portledger-proof/2` bundles, written from docs/proof-format.md only.

It imports nothing from the project (no node/, consensus/, contracts/, gateway/): only the
``rlp`` codec, pycryptodome's Keccak, ``coincurve`` and ``cryptography``'s AES-GCM — on purpose
different libraries from the project's verifier where a choice exists. ``check(bundle,
genesis)`` returns ``None`` when the bundle verifies, else the reason code of the first failed
check (section 6 of the document).
"""

from __future__ import annotations

import zlib
from typing import Any

import coincurve
import rlp
from Crypto.Hash import keccak as _keccak
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class Fail(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def kec(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


def unhex(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise Fail("bundle-format")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise Fail("bundle-format") from None


def recover(digest: bytes, sig: bytes) -> bytes | None:
    if len(sig) != 65 or sig[64] > 1:
        return None
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    if not (0 < r < N and 0 < s < N):
        return None
    try:
        pub = coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None)
    except Exception:
        return None
    return kec(pub.format(compressed=False)[1:])[12:]


def open_envelope(payload: bytes) -> tuple[bytes, bytes, bytes, bool]:
    """Section 5.4, layout portledger-envelope/1: (ciphertext and tag, nonce, aad, compressed)."""
    if len(payload) < 19 or payload[0] != 1 or payload[1] not in (0, 1, 2, 3):
        raise Fail("envelope-format")
    n = payload[6]
    start = 19 + (32 if n > 0 else 0) + 4 * n + 48 * (1 + n + (payload[1] & 1))
    if len(payload) < start + 16:
        raise Fail("envelope-format")
    return payload[start:], payload[7:19], payload[:start], bool(payload[1] & 2)


def parse_extra(raw: bytes) -> list[Any]:
    try:
        extra = rlp.decode(raw)
    except Exception:
        raise Fail("header-format") from None
    if not (isinstance(extra, list) and len(extra) == 5):
        raise Fail("header-format")
    vanity, vals, vote, rnd, seals = extra
    if not (isinstance(vanity, bytes) and len(vanity) == 32 and isinstance(vals, list)
            and all(isinstance(v, bytes) and len(v) == 20 for v in vals) and len(set(vals)) == len(vals)
            and isinstance(vote, list) and isinstance(rnd, bytes) and (len(rnd) <= 4 or rnd[0] == 0)
            and isinstance(seals, list) and all(isinstance(s, bytes) and len(s) == 65 for s in seals)):
        raise Fail("header-format")
    if vote and not (len(vote) == 2 and len(vote[0]) == 20 and vote[1] in (b"\xff", b"")):
        raise Fail("header-format")
    if rnd[:1] == b"\x00":
        raise Fail("old-format")  # a round with leading zeros: chain format v1's 4 bytes
    return extra


class Header:
    def __init__(self, raw: bytes) -> None:
        try:
            fields = rlp.decode(raw)
        except Exception:
            raise Fail("header-format") from None
        if not (isinstance(fields, list) and len(fields) >= 15
                and all(isinstance(f, bytes) for f in fields) and rlp.encode(fields) == raw):
            raise Fail("header-format")
        self.fields = fields
        self.extra = parse_extra(fields[12])
        self.number = int.from_bytes(fields[8], "big")
        self.validators = list(self.extra[1])

    def digest(self) -> bytes:
        fields = list(self.fields)
        fields[12] = rlp.encode([self.extra[0], self.extra[1], self.extra[2], self.extra[3], []])
        return kec(rlp.encode(fields))


def sealed_by(header: Header, members: list[bytes]) -> None:
    seals = header.extra[4]
    digest = header.digest()
    signers = [recover(digest, s) for s in seals]
    if seals and not any(x in members for x in signers):
        raise Fail("seals-do-not-match-header")
    seen: list[bytes] = []
    for signer in signers:
        if signer is None:
            raise Fail("seal-unrecoverable")
        if signer not in members:
            raise Fail("missing-change" if signer in header.validators else "seal-non-validator")
        if signer in seen:
            raise Fail("seal-duplicate")
        seen.append(signer)
    if len(seen) < (2 * len(members) + 2) // 3:
        raise Fail("too-few-seals")


def nibbles(data: bytes) -> list[int]:
    return [n for b in data for n in (b >> 4, b & 15)]


def mpt(root: bytes, key: bytes, proof: list[bytes]) -> bytes:
    if len(proof) > 64:
        raise Fail("bundle-format")
    path, ref, i = nibbles(key), root, 0
    while True:
        if isinstance(ref, bytes) and len(ref) == 32:
            if i == len(proof):
                raise Fail("proof-truncated")
            if kec(proof[i]) != ref:
                raise Fail("proof-node-mismatch")
            try:
                node = rlp.decode(proof[i])
            except Exception:
                raise Fail("proof-node-mismatch") from None
            i += 1
        elif isinstance(ref, list):
            node = ref
        elif ref == b"":
            raise Fail("proof-key-absent")
        else:
            raise Fail("proof-node-mismatch")
        if isinstance(node, list) and len(node) == 17:
            if not path:
                value = node[16]
                break
            ref, path = node[path[0]], path[1:]
        elif isinstance(node, list) and len(node) == 2 and isinstance(node[0], bytes) and node[0]:
            flag = node[0][0] >> 4
            rest = nibbles(node[0])[1 if flag & 1 else 2:]
            if flag & 2:
                if rest != path:
                    raise Fail("proof-key-absent")
                value = node[1]
                break
            if path[: len(rest)] != rest:
                raise Fail("proof-key-absent")
            ref, path = node[1], path[len(rest):]
        else:
            raise Fail("proof-node-mismatch")
    if not value:
        raise Fail("proof-key-absent")
    if i != len(proof):
        raise Fail("proof-extra-nodes")
    return bytes(value)


def tx_chain_id(raw: bytes) -> int:
    try:
        if raw[0] >= 0xC0:
            f = rlp.decode(raw)
            v = int.from_bytes(f[6], "big")
            if v < 35:
                raise Fail("transaction-chain-id")
            cid, parity = (v - 35) // 2, (v - 35) % 2
            h = kec(rlp.encode([*f[:6], cid, 0, 0]))
            r, s = f[7], f[8]
        elif raw[0] in (1, 2):
            f = rlp.decode(raw[1:])
            k = 8 if raw[0] == 1 else 9
            if len(f) != k + 3:
                raise Fail("transaction-format")
            cid, parity = int.from_bytes(f[0], "big"), int.from_bytes(f[k], "big")
            h = kec(raw[:1] + rlp.encode(f[:k]))
            r, s = f[k + 1], f[k + 2]
        else:
            raise Fail("transaction-format")
    except Fail:
        raise
    except Exception:
        raise Fail("transaction-format") from None
    if parity > 1 or recover(h, r.rjust(32, b"\0") + s.rjust(32, b"\0") + bytes([parity])) is None:
        raise Fail("transaction-format")
    return cid


def check(bundle: Any, genesis: Any) -> str | None:
    try:
        verify(bundle, genesis)
    except Fail as exc:
        return exc.code
    return None


def verify(bundle: Any, genesis: Any) -> None:
    try:
        chain_id = int(genesis["config"]["chainId"])
        genesis_set = list(parse_extra(bytes.fromhex(genesis["extraData"][2:]))[1])
        named = genesis.get("portledger", {}).get("contracts", {})
        cargo = bytes.fromhex(named.get("CargoLedger", {}).get("address", "0x" + "00" * 18 + "1001")[2:])
        anchors = bytes.fromhex(named.get("Anchors", {}).get("address", "0x" + "00" * 18 + "1004")[2:])
    except Fail as exc:
        raise Fail("old-format" if exc.code == "old-format" else "genesis-format") from None
    except (KeyError, TypeError, ValueError):
        raise Fail("genesis-format") from None
    if not genesis_set:
        raise Fail("genesis-format")
    if isinstance(bundle, dict) and bundle.get("format") == "portledger-proof/1":
        raise Fail("old-format")
    if not isinstance(bundle, dict) or bundle.get("format") != "portledger-proof/2":
        raise Fail("bundle-format")
    if not isinstance(bundle.get("chainId"), int):
        raise Fail("bundle-format")
    if bundle["chainId"] != chain_id:
        raise Fail("chain-id-mismatch")
    if [unhex(v) for v in bundle.get("genesisValidators", [])] != genesis_set:
        raise Fail("genesis-mismatch")
    for name in ("validatorChanges", "headers", "events"):
        if not isinstance(bundle.get(name), list):
            raise Fail("bundle-format")

    changes = [Header(unhex(raw)) for raw in bundle["validatorChanges"]]
    last = 0
    for c in changes:
        if c.number <= last:
            raise Fail("change-order")
        last = c.number
    steps: list[tuple[int, list[bytes]]] = [(0, genesis_set)]
    for c in changes:
        sealed_by(c, steps[-1][1])
        if c.validators == steps[-1][1]:
            raise Fail("not-a-change")
        steps.append((c.number, c.validators))

    headers: dict[int, Header] = {}
    for raw in bundle["headers"]:
        h = Header(unhex(raw))
        if h.number in headers:
            raise Fail("duplicate-header")
        if h.number == 0:
            raise Fail("header-format")
        sealed_by(h, [s for n, s in steps if n < h.number][-1])
        headers[h.number] = h
    if headers and steps[-1][0] >= max(headers):
        raise Fail("change-order")
    if not bundle["events"]:
        raise Fail("bundle-format")

    for e in bundle["events"]:
        if not isinstance(e, dict):
            raise Fail("bundle-format")
        h = headers.get(e.get("block"))  # type: ignore[arg-type]
        if h is None:
            raise Fail("missing-header")
        index = e.get("transactionIndex")
        if not isinstance(index, int):
            raise Fail("bundle-format")
        key = rlp.encode(index)
        receipt = unhex(e.get("receipt"))
        if mpt(h.fields[5], key, [unhex(n) for n in e.get("receiptProof", [])]) != receipt:
            raise Fail("receipt-mismatch")
        try:
            body = rlp.decode(receipt[1:] if receipt[0] < 0x80 else receipt)
            status, _gas, bloom, logs = body
            logs = [(a, list(t), d) for a, t, d in logs]
            assert len(bloom) == 256
        except Exception:
            raise Fail("receipt-format") from None
        if status != b"\x01":
            raise Fail("receipt-failed")
        li = e.get("logIndex")
        if not isinstance(li, int) or li >= len(logs):
            raise Fail("log-index")
        stated = e.get("log") or {}
        log = (unhex(stated.get("address")), [unhex(t) for t in stated.get("topics", [])], unhex(stated.get("data")))
        if logs[li] != log:
            raise Fail("log-mismatch")
        tx = unhex(e.get("transaction"))
        if mpt(h.fields[4], key, [unhex(n) for n in e.get("transactionProof", [])]) != tx:
            raise Fail("transaction-mismatch")
        if tx_chain_id(tx) != chain_id:
            raise Fail("transaction-chain-id")

        address, topics, data = log
        if address == cargo and topics[:1] == [kec(b"CargoEvent(bytes32,uint256,uint256)")]:
            if len(topics) != 4 or len(data) < 87:
                raise Fail("cargo-format")
            length = int.from_bytes(data[21:23], "big")
            if 87 + length > len(data) or data[23:55] != topics[1]:
                raise Fail("cargo-format")
            ref = e.get("subjectReference")
            if ref is not None:
                norm = "".join(ch for ch in str(ref).upper() if ch not in " -/")
                if kec(norm.encode()) != data[23:55]:
                    raise Fail("subject-mismatch")
            d = e.get("disclosure")
            if d is not None:
                plain = unhex(d.get("plaintext"))
                if kec(plain) != data[55:87]:
                    raise Fail("payload-hash-mismatch")
                layout = d.get("layout", "raw")
                if layout not in ("raw", "portledger-envelope/1"):
                    raise Fail("bundle-format")
                if d.get("dataKey") is not None:
                    payload = data[87 : 87 + length]
                    if layout == "raw":
                        nonce, aad = unhex(d.get("nonce")), unhex(d.get("aad", "0x"))
                        if not 8 <= len(nonce) <= 16 or d.get("compression", "none") not in ("none", "zlib"):
                            raise Fail("bundle-format")
                        off = d.get("ciphertextOffset", 0)
                        n = d.get("ciphertextLength", max(len(payload) - off, 0))
                        if n < 16 or off + n > len(payload):
                            raise Fail("ciphertext-range")
                        sealed = payload[off : off + n]
                        packed = d.get("compression", "none") == "zlib"
                    else:
                        if any(k in d for k in ("nonce", "ciphertextOffset", "ciphertextLength",
                                                "compression", "aad")):
                            raise Fail("bundle-format")
                        sealed, nonce, aad, packed = open_envelope(payload)
                    try:
                        opened = AESGCM(unhex(d["dataKey"])).decrypt(nonce, sealed, aad or None)
                        if packed:
                            inflater = zlib.decompressobj()
                            opened = inflater.decompress(opened, 1 << 20)
                            if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
                                raise ValueError("not one zlib stream")
                    except (InvalidTag, zlib.error, ValueError):
                        raise Fail("decryption-failed") from None
                    if opened != plain:
                        raise Fail("plaintext-mismatch")
        elif address == anchors and topics[:1] == [
            kec(b"Anchored(uint256,uint256,uint8,bytes32,uint256,uint256,uint256)")
        ]:
            if len(topics) != 4 or len(data) != 128:
                raise Fail("anchor-format")
            a = e.get("anchor")
            if a is not None:
                leaf_hash = kec(unhex(a["reading"])) if "reading" in a else unhex(a["readingHash"])
                node = kec(b"\x00" + leaf_hash)
                for sib in a.get("merkleProof", []):
                    s = unhex(sib)
                    node = kec(b"\x01" + min(node, s) + max(node, s))
                if node != data[:32]:
                    raise Fail("anchor-proof-mismatch")
        elif e.get("disclosure") is not None or e.get("anchor") is not None:
            raise Fail("unsupported-log")
