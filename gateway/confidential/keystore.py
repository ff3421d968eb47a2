"""Each hosted organisation's keys, encrypted at rest under the gateway's keystore passphrase.

A gateway acts for the organisations it hosts: it signs their transactions (secp256k1), unwraps
the data keys of records sealed for them (X25519) and derives their record keys (a master
secret, see :mod:`gateway.confidential.envelope`). Those keys live in one file per organisation::

    <folder>/org-<id>.json
    {"format": 1, "org_id": 7, "kdf": "scrypt", "n": 32768, "r": 8, "p": 1,
     "salt": "<16 bytes hex>", "nonce": "<12 bytes hex>", "ciphertext": "<hex>"}

``key = scrypt(passphrase, salt, n, r, p, 32 bytes)``; ``ciphertext = AES-256-GCM(key, nonce,
JSON of the keys (hex), aad = b"portledger/keystore/v1" || org id as a decimal string)``, so a
file copied under another organisation's name does not open. The gateway's own secrets
(:meth:`Keystore.secret`) live beside them as ``<folder>/secret-<name>.json``, in the same
format with ``"name"`` in place of ``"org_id"``. Every write takes a fresh salt and
nonce, goes to a temporary file that is fsynced and renamed over the old one (then the folder is
fsynced), so a crash leaves the old or the new file, never a torn one; files are mode 0600 and
the folder 0700. Read-modify-write (creation, rotation) holds an exclusive ``flock`` on
``<folder>/.lock``, so several gateway processes sharing a folder neither lose an update nor
create an organisation twice. Decrypted keys are cached per instance and re-read when the file
changes (another process rotated a key).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_keys.datatypes import PrivateKey
from eth_utils.exceptions import ValidationError

from gateway.appkeys import CONFIG, KEYSTORE
from gateway.confidential.envelope import x25519_public_key
from gateway.config import GatewayConfig

#: scrypt cost parameters of new files (files carry their own, so they can be raised later).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1

_FORMAT = 1
_AAD = b"portledger/keystore/v1"
_FILE = re.compile(r"org-(\d+)\.json")
_SECRET_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_KEY_SIZE = 32


class KeystoreError(Exception):
    """The keystore cannot be opened: wrong passphrase, corrupt or unreadable file."""


@dataclass(frozen=True)
class OrgKeys:
    """The keys the gateway holds for one hosted organisation."""

    org_id: int
    """The organisation's chain id."""
    signing_key: bytes = field(repr=False)
    """32-byte secp256k1 private key; its account signs the organisation's transactions."""
    x25519_private: bytes = field(repr=False)
    """32-byte X25519 private key; records and grants are wrapped for its public half."""
    master_secret: bytes = field(repr=False)
    """32-byte secret the organisation's record keys derive from."""
    previous_x25519: tuple[bytes, ...] = field(default=(), repr=False)
    """Earlier X25519 private keys, newest first, kept to read records sealed before a rotation."""

    def __post_init__(self) -> None:
        if self.org_id <= 0:
            raise ValueError(f"organisation id must be positive, not {self.org_id}")
        for name in ("signing_key", "x25519_private", "master_secret"):
            if len(getattr(self, name)) != _KEY_SIZE:
                raise ValueError(f"{name} must be 32 bytes")
        if any(len(k) != _KEY_SIZE for k in self.previous_x25519):
            raise ValueError("previous X25519 keys must be 32 bytes")
        if not _valid_signing_key(self.signing_key):
            raise ValueError("signing_key is not a secp256k1 private key (0 < key < n)")

    @cached_property
    def address(self) -> str:
        """Checksum address of :attr:`signing_key`'s account."""
        return PrivateKey(self.signing_key).public_key.to_checksum_address()

    @cached_property
    def x25519_public(self) -> bytes:
        """The 32-byte X25519 public key others wrap for (registered on chain)."""
        return x25519_public_key(self.x25519_private)

    @property
    def x25519_keys(self) -> tuple[bytes, ...]:
        """Every X25519 private key to try when reading, current first."""
        return (self.x25519_private, *self.previous_x25519)

    def _to_json(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "signing_key": self.signing_key.hex(),
            "x25519_private": self.x25519_private.hex(),
            "master_secret": self.master_secret.hex(),
            "previous_x25519": [k.hex() for k in self.previous_x25519],
        }

    @classmethod
    def _from_json(cls, raw: dict[str, Any]) -> OrgKeys:
        return cls(
            org_id=int(raw["org_id"]),
            signing_key=bytes.fromhex(raw["signing_key"]),
            x25519_private=bytes.fromhex(raw["x25519_private"]),
            master_secret=bytes.fromhex(raw["master_secret"]),
            previous_x25519=tuple(bytes.fromhex(k) for k in raw.get("previous_x25519", ())),
        )


def _valid_signing_key(key: bytes) -> bool:
    try:
        PrivateKey(key)
    except ValidationError:
        return False
    return True


def _signing_key() -> bytes:
    while True:  # a uniform 32-byte string is out of the curve's range with probability 2**-128
        key = secrets.token_bytes(_KEY_SIZE)
        if _valid_signing_key(key):
            return key


class Keystore:
    """The encrypted keys of the organisations one gateway hosts (see the module docstring).

    Parameters
    ----------
    folder
        Folder of the ``org-<id>.json`` files (created, mode 0700, if missing).
    passphrase
        The keystore passphrase; an empty one is refused.
    """

    def __init__(self, folder: Path, passphrase: str) -> None:
        if not passphrase:
            raise KeystoreError("the keystore needs a passphrase (PORTLEDGER_KEYSTORE_PASSPHRASE)")
        self.folder = Path(folder)
        self._passphrase = passphrase.encode("utf-8")
        self._cache: dict[int, tuple[tuple[int, int, int], OrgKeys]] = {}
        self._secrets: dict[str, bytes] = {}
        self._thread_lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"Keystore({str(self.folder)!r})"

    def path(self, org_id: int) -> Path:
        """The file of an organisation's keys."""
        return self.folder / f"org-{int(org_id)}.json"

    def org_ids(self) -> list[int]:
        """The organisations with keys in this keystore, increasing."""
        return sorted(
            int(m.group(1)) for p in self.folder.iterdir() if (m := _FILE.fullmatch(p.name))
        )

    def get(self, org_id: int) -> OrgKeys:
        """An organisation's keys (decrypted once, then cached until the file changes).

        Raises
        ------
        KeyError
            No keys for the organisation.
        KeystoreError
            Wrong passphrase or corrupt file.
        """
        path = self.path(org_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise KeyError(org_id) from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(org_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            with path.open("rb") as fh:
                fst = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:
            raise KeyError(org_id) from None
        keys = self._decrypt(org_id, data, path)
        self._cache[org_id] = ((fst.st_ino, fst.st_mtime_ns, fst.st_size), keys)
        return keys

    def create(self, org_id: int) -> OrgKeys:
        """Fresh random keys for an organisation.

        Raises
        ------
        KeystoreError
            The organisation already has keys.
        """
        return self._add(
            OrgKeys(
                org_id=org_id,
                signing_key=_signing_key(),
                x25519_private=secrets.token_bytes(_KEY_SIZE),
                master_secret=secrets.token_bytes(_KEY_SIZE),
            )
        )

    def import_keys(
        self, org_id: int, *, signing_key: bytes, x25519_private: bytes, master_secret: bytes
    ) -> OrgKeys:
        """Store existing keys for an organisation (moving it from another gateway).

        Raises
        ------
        ValueError
            A key of the wrong size, or a signing key outside secp256k1's range.
        KeystoreError
            The organisation already has keys.
        """
        return self._add(
            OrgKeys(
                org_id=org_id,
                signing_key=bytes(signing_key),
                x25519_private=bytes(x25519_private),
                master_secret=bytes(master_secret),
            )
        )

    def rotate_x25519(self, org_id: int) -> OrgKeys:
        """Give an organisation a new X25519 key, keeping the old one in ``previous_x25519``.

        Raises
        ------
        KeyError
            No keys for the organisation.
        """
        with self._locked():
            self._cache.pop(org_id, None)
            old = self.get(org_id)
            new = replace(
                old,
                x25519_private=secrets.token_bytes(_KEY_SIZE),
                previous_x25519=(old.x25519_private, *old.previous_x25519),
            )
            self._write(new)
        return new

    def secret(self, name: str) -> bytes:
        """A 32-byte secret of the gateway itself (not of an organisation), made on first use.

        Kept in ``<folder>/secret-<name>.json``, encrypted like an organisation's keys (with
        ``"name"`` in place of ``"org_id"``); several processes sharing the folder get the same
        one. The outbox encrypts the bodies of unsettled operations under ``secret("outbox")``.

        Raises
        ------
        ValueError
            ``name`` is not 1 to 40 lowercase letters, digits and dashes.
        KeystoreError
            Wrong passphrase or corrupt file.
        """
        if not _SECRET_NAME.fullmatch(name):
            raise ValueError(f"a keystore secret's name is [a-z][a-z0-9-]{{0,39}}, not {name!r}")
        cached = self._secrets.get(name)
        if cached is not None:
            return cached
        path = self.folder / f"secret-{name}.json"
        aad = _AAD + b"secret:" + name.encode()
        if not path.exists():
            with self._locked():
                if not path.exists():
                    value = secrets.token_bytes(_KEY_SIZE)
                    plaintext = json.dumps({"name": name, "secret": value.hex()}).encode()
                    self._write_file(path, "name", name, plaintext, aad)
        plaintext = self._open_file(path.read_bytes(), path, "name", name, aad)
        try:
            doc = json.loads(plaintext)
            value = bytes.fromhex(doc["secret"])
            if doc["name"] != name or len(value) != _KEY_SIZE:
                raise ValueError("not this secret")
        except (ValueError, TypeError, KeyError) as exc:
            raise KeystoreError(f"corrupt keystore file {path}: {exc}") from None
        self._secrets[name] = value
        return value

    # -- internals ------------------------------------------------------------------------------

    def _add(self, keys: OrgKeys) -> OrgKeys:
        with self._locked():
            if self.path(keys.org_id).exists():
                raise KeystoreError(f"organisation {keys.org_id} already has keys in {self.folder}")
            self._write(keys)
        return keys

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _kdf(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        return Scrypt(salt=salt, length=_KEY_SIZE, n=n, r=r, p=p).derive(self._passphrase)

    def _write(self, keys: OrgKeys) -> None:
        path = self.path(keys.org_id)
        plaintext = json.dumps(keys._to_json()).encode()
        self._write_file(path, "org_id", keys.org_id, plaintext, _AAD + str(keys.org_id).encode())
        st = path.stat()  # under the lock: nobody replaced it since
        self._cache[keys.org_id] = ((st.st_ino, st.st_mtime_ns, st.st_size), keys)

    def _write_file(
        self, path: Path, field: str, owner: int | str, plaintext: bytes, aad: bytes
    ) -> None:
        """Encrypt ``plaintext`` into ``path`` atomically (its document names ``field: owner``)."""
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        key = self._kdf(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext, aad)
        document = {
            "format": _FORMAT,
            field: owner,
            "kdf": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": salt.hex(),
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
        }
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(document, indent=1).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _decrypt(self, org_id: int, data: bytes, path: Path) -> OrgKeys:
        corrupt = f"corrupt keystore file {path}"
        plaintext = self._open_file(data, path, "org_id", org_id, _AAD + str(org_id).encode())
        try:
            keys = OrgKeys._from_json(json.loads(plaintext))
        except (ValueError, TypeError, KeyError) as exc:
            raise KeystoreError(f"{corrupt}: decrypted keys are malformed: {exc}") from None
        if keys.org_id != org_id:
            raise KeystoreError(f"{corrupt}: holds organisation {keys.org_id}")
        return keys

    def _open_file(
        self, data: bytes, path: Path, field: str, owner: int | str, aad: bytes
    ) -> bytes:
        """Decrypt a file :meth:`_write_file` wrote for ``field: owner``."""
        corrupt = f"corrupt keystore file {path}"
        try:
            document = json.loads(data)
            if document.get("format") != _FORMAT or document.get("kdf") != "scrypt":
                raise KeystoreError(f"{corrupt}: unknown format")
            if document.get(field) != owner:
                what = "organisation" if field == "org_id" else "secret"
                raise KeystoreError(f"{corrupt}: holds {what} {document.get(field)}")
            salt = bytes.fromhex(document["salt"])
            nonce = bytes.fromhex(document["nonce"])
            ciphertext = bytes.fromhex(document["ciphertext"])
            n, r, p = int(document["n"]), int(document["r"]), int(document["p"])
        except KeystoreError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise KeystoreError(f"{corrupt}: {exc.__class__.__name__}: {exc}") from None
        try:
            key = self._kdf(salt, n, r, p)
            return AESGCM(key).decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError, MemoryError):
            raise KeystoreError(
                f"wrong passphrase or corrupt keystore file {path} (it does not decrypt)"
            ) from None




def open_keystore(config: GatewayConfig) -> Keystore:
    """The keystore of a gateway: ``<data_dir>/keystore``, under ``config.passphrase``.

    Raises
    ------
    KeystoreError
        No passphrase configured.
    """
    return Keystore(config.path("keystore"), config.passphrase)


def setup(app: web.Application) -> None:
    """Open the configured keystore as ``app[KEYSTORE]`` (nothing to close: files are opened per use).

    A gateway without a keystore passphrase cannot sign or read anything, so it refuses to start
    (:class:`KeystoreError`) rather than fail on the first upload.
    """
    app[KEYSTORE] = open_keystore(app[CONFIG])
