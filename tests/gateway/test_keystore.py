"""The keystore: keys survive restarts, stay encrypted, and concurrent writers do not corrupt them."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web
from eth_keys import keys as eth_keys
from eth_utils.crypto import keccak

from gateway.appkeys import CONFIG, KEYSTORE
from gateway.confidential import keystore as ks
from gateway.confidential.envelope import open_as_reader, seal, x25519_public_key
from gateway.confidential.keystore import Keystore, KeystoreError, OrgKeys, open_keystore
from gateway.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"


DEFAULT_N = ks.SCRYPT_N


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run with n = 2**10 (files record their own parameters); one test checks the default."""
    monkeypatch.setattr(ks, "SCRYPT_N", 2**10)


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keystore", PASSPHRASE)


def test_create_and_get(store: Keystore) -> None:
    keys = store.create(7)
    assert keys.org_id == 7
    assert len({keys.signing_key, keys.x25519_private, keys.master_secret}) == 3
    assert store.get(7) is keys  # cached
    assert store.org_ids() == [7]
    assert keys.address == eth_keys.PrivateKey(keys.signing_key).public_key.to_checksum_address()
    assert keys.x25519_public == x25519_public_key(keys.x25519_private)
    assert keys.x25519_keys == (keys.x25519_private,)
    with pytest.raises(KeystoreError, match="already has keys"):
        store.create(7)
    with pytest.raises(KeyError):
        store.get(8)


def test_secrets_stay_out_of_reprs_and_files(store: Keystore) -> None:
    keys = store.create(7)
    text = repr(keys) + repr(store) + store.path(7).read_text()
    for secret in (keys.signing_key, keys.x25519_private, keys.master_secret):
        assert secret.hex() not in text
    assert PASSPHRASE not in text


def test_persists_across_instances(store: Keystore, tmp_path: Path) -> None:
    created = {org: store.create(org) for org in (3, 12, 5)}
    again = Keystore(tmp_path / "keystore", PASSPHRASE)
    assert again.org_ids() == [3, 5, 12]
    for org, keys in created.items():
        assert again.get(org) == keys


def test_import_keys(store: Keystore) -> None:
    signing = keccak(b"signing")
    keys = store.import_keys(
        9, signing_key=signing, x25519_private=b"\x01" * 32, master_secret=b"\x02" * 32
    )
    assert store.get(9).signing_key == signing == keys.signing_key
    with pytest.raises(KeystoreError, match="already has keys"):
        store.import_keys(
            9, signing_key=signing, x25519_private=b"\x01" * 32, master_secret=b"\x02" * 32
        )
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    for bad in (b"\x00" * 32, n.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ValueError):
            store.import_keys(
                10, signing_key=bad, x25519_private=b"\x01" * 32, master_secret=b"\x02" * 32
            )
    with pytest.raises(ValueError):
        store.import_keys(
            10, signing_key=signing, x25519_private=b"\x01" * 33, master_secret=b"\x02" * 32
        )
    assert store.org_ids() == [9]
    with pytest.raises(ValueError, match="positive"):
        store.create(0)


def test_rotate_x25519_keeps_old_keys_for_reading(store: Keystore, tmp_path: Path) -> None:
    keys = store.create(4)
    subject = keccak(b"MSKU9070323")
    old_record = seal(
        b"before the rotation",
        subject=subject,
        owner_secret=b"\x05" * 32,
        key_version=0,
        readers={4: keys.x25519_public},
        reference=None,
    ).envelope
    first = store.rotate_x25519(4)
    second = store.rotate_x25519(4)
    assert second.previous_x25519 == (first.x25519_private, keys.x25519_private)
    assert (second.signing_key, second.master_secret) == (keys.signing_key, keys.master_secret)
    reloaded = Keystore(tmp_path / "keystore", PASSPHRASE).get(4)
    assert reloaded == second
    opened = []
    for private in reloaded.x25519_keys:
        try:
            opened.append(
                open_as_reader(old_record, subject=subject, org_id=4, x25519_private=private)
            )
        except Exception:
            continue
    assert opened == [b"before the rotation"]
    with pytest.raises(KeyError):
        store.rotate_x25519(99)


def test_other_instances_see_a_rotation(store: Keystore, tmp_path: Path) -> None:
    store.create(4)
    other = Keystore(tmp_path / "keystore", PASSPHRASE)
    before = other.get(4)
    rotated = store.rotate_x25519(4)
    assert other.get(4) == rotated != before


def test_wrong_passphrase(store: Keystore, tmp_path: Path) -> None:
    store.create(1)
    with pytest.raises(KeystoreError, match="wrong passphrase or corrupt keystore file"):
        Keystore(tmp_path / "keystore", "Correct horse battery staple").get(1)


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="passphrase"):
        Keystore(tmp_path, "")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: "{not json", "corrupt keystore file"),
        (lambda d: "[]", "corrupt keystore file"),
        (lambda d: {**d, "ciphertext": d["ciphertext"][:-2] + "00"}, "wrong passphrase or corrupt"),
        (lambda d: {**d, "salt": "zz"}, "corrupt keystore file"),
        (lambda d: {**d, "nonce": "00" * 12}, "wrong passphrase or corrupt"),
        (lambda d: {k: v for k, v in d.items() if k != "salt"}, "corrupt keystore file"),
        (lambda d: {**d, "format": 2}, "unknown format"),
        (lambda d: {**d, "n": 3}, "wrong passphrase or corrupt"),
        (lambda d: {**d, "org_id": 2}, "holds organisation 2"),
    ],
)
def test_corrupt_file(store: Keystore, tmp_path: Path, corrupt, message: str) -> None:
    store.create(1)
    path = store.path(1)
    changed = corrupt(json.loads(path.read_text()))
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(KeystoreError, match=message):
        Keystore(tmp_path / "keystore", PASSPHRASE).get(1)


def test_a_file_renamed_to_another_organisation_does_not_open(
    store: Keystore, tmp_path: Path
) -> None:
    store.create(1)
    document = json.loads(store.path(1).read_text())
    store.path(2).write_text(json.dumps({**document, "org_id": 2}))  # the aad binds org 1
    with pytest.raises(KeystoreError, match="wrong passphrase or corrupt"):
        Keystore(tmp_path / "keystore", PASSPHRASE).get(2)


def test_file_and_folder_modes(store: Keystore) -> None:
    store.create(1)
    store.rotate_x25519(1)
    assert stat.S_IMODE(store.path(1).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in store.folder.iterdir()) == [".lock", "org-1.json"]  # no temp left


def test_default_scrypt_parameters(store: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ks, "SCRYPT_N", DEFAULT_N)
    store.create(1)
    document = json.loads(store.path(1).read_text())
    assert (document["n"], document["r"], document["p"]) == (2**15, 8, 1)
    assert len(bytes.fromhex(document["salt"])) == 16
    other = Keystore(store.folder, PASSPHRASE)
    assert other.get(1) == store.get(1)


def test_concurrent_instances_do_not_lose_or_tear_writes(tmp_path: Path) -> None:
    folder = tmp_path / "keystore"
    Keystore(folder, PASSPHRASE).create(1)
    stores = [Keystore(folder, PASSPHRASE) for _ in range(4)]
    created: list[int] = []
    refused: list[int] = []
    errors: list[BaseException] = []

    def work(i: int, store: Keystore) -> None:
        try:
            for _ in range(3):
                store.rotate_x25519(1)
            try:
                store.create(100)  # every instance tries; exactly one may succeed
                created.append(i)
            except KeystoreError:
                refused.append(i)
            store.create(10 + i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(created) == 1 and len(refused) == 3
    fresh = Keystore(folder, PASSPHRASE)
    assert fresh.org_ids() == [1, 10, 11, 12, 13, 100]
    assert len(fresh.get(1).previous_x25519) == 12  # no rotation was lost
    for org in fresh.org_ids():
        fresh.get(org)


def test_concurrent_processes(tmp_path: Path) -> None:
    folder = tmp_path / "keystore"
    Keystore(folder, PASSPHRASE).create(1)
    script = (
        "import sys; from gateway.confidential import keystore as ks; ks.SCRYPT_N = 2**10; "
        "s = ks.Keystore(sys.argv[1], sys.argv[2]); "
        "[s.rotate_x25519(1) for _ in range(5)]"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(folder), PASSPHRASE], cwd=ROOT)
        for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert len(Keystore(folder, PASSPHRASE).get(1).previous_x25519) == 15


def test_org_keys_validation() -> None:
    with pytest.raises(ValueError, match="master_secret"):
        OrgKeys(org_id=1, signing_key=keccak(b"k"), x25519_private=b"\x01" * 32, master_secret=b"")
    with pytest.raises(ValueError, match="previous"):
        OrgKeys(
            org_id=1,
            signing_key=keccak(b"k"),
            x25519_private=b"\x01" * 32,
            master_secret=b"\x02" * 32,
            previous_x25519=(b"\x03",),
        )


def test_open_keystore_and_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTLEDGER_KEYSTORE_PASSPHRASE", raising=False)
    config = GatewayConfig(data_dir=tmp_path, keystore_passphrase=PASSPHRASE)
    store = open_keystore(config)
    assert store.folder == tmp_path / "keystore"
    store.create(3)

    app = web.Application()
    app[CONFIG] = config
    ks.setup(app)
    assert app[KEYSTORE].get(3) == store.get(3)

    monkeypatch.setenv("PORTLEDGER_KEYSTORE_PASSPHRASE", "from the environment")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore(config).get(3)
    monkeypatch.delenv("PORTLEDGER_KEYSTORE_PASSPHRASE")
    with pytest.raises(KeystoreError, match="passphrase"):
        open_keystore(GatewayConfig(data_dir=tmp_path))


def test_gateway_secrets(tmp_path: Path) -> None:
    folder = tmp_path / "keystore"
    store = Keystore(folder, PASSPHRASE)
    first = store.secret("outbox")
    assert len(first) == 32 and store.secret("outbox") == first
    assert Keystore(folder, PASSPHRASE).secret("outbox") == first  # another process, same one
    assert store.secret("other") != first
    assert first.hex() not in (folder / "secret-outbox.json").read_text()
    assert store.org_ids() == []  # not an organisation
    with pytest.raises(ValueError):
        store.secret("../org-1")
    with pytest.raises(KeystoreError, match="wrong passphrase or corrupt keystore file"):
        Keystore(folder, "another passphrase").secret("outbox")
    (folder / "secret-copy.json").write_bytes((folder / "secret-outbox.json").read_bytes())
    with pytest.raises(KeystoreError, match="holds secret outbox"):
        Keystore(folder, PASSPHRASE).secret("copy")
