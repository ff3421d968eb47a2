"""``land.db``: jobs, drivers and their sign-in codes, used token nonces, gate-outs, receipts.

One SQLite file (:class:`gateway.sqlite.Store`, WAL). Every method is short and synchronous;
the service calls them from the event loop (they touch a few rows by key) except the argon2
work, which it does in a worker thread before or after.

- ``jobs`` (+ ``job_containers``, indexed by container): the job's columns and its body;
- ``drivers`` and ``driver_codes`` (one live code per driver: its argon2id hash, expiry and
  whether it was used); ``code_failures`` counts failed sign-ins per phone and per address;
- ``used_nonces``: a token's nonce once used at a gate (``gate-out`` or ``receipt``), which makes
  the next presentation there a replay;
- ``ccrn_bindings``: which job (and vehicle) a ROCARS CCRN is bound to — one vehicle per CCRN
  (:meth:`LandStore.bind_ccrn`); the CCRN and the vehicle are looked up by their HMAC;
- ``gate_outs`` (one per container and job) and ``receipts`` (one per job) with the idempotency
  keys of the cargo events they put in the outbox.

At rest, job and receipt bodies and drivers' names and phone numbers are sealed with AES-256-GCM
(a key derived from the keystore secret :data:`SECRET`, each bound to its row); phone numbers
and client addresses are looked up by an HMAC-SHA-256 of them, never stored in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.land.model import Driver, Job, job_from_row
from gateway.sqlite import Store

#: The keystore secret the store's bodies are sealed under.
SECRET = "land"


class LandStoreError(Exception):
    """The store's data cannot be read (a body that does not decrypt)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL,
    haulier INTEGER NOT NULL,
    terminal INTEGER NOT NULL,
    warehouse INTEGER NOT NULL,
    driver_id INTEGER,
    state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_org ON jobs(org_id, created);
CREATE INDEX IF NOT EXISTS jobs_driver ON jobs(driver_id);
CREATE INDEX IF NOT EXISTS jobs_terminal ON jobs(terminal);
CREATE INDEX IF NOT EXISTS jobs_warehouse ON jobs(warehouse);
CREATE TABLE IF NOT EXISTS job_containers (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    container TEXT NOT NULL,
    PRIMARY KEY (job_id, container));
CREATE INDEX IF NOT EXISTS job_containers_box ON job_containers(container);
CREATE TABLE IF NOT EXISTS drivers (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL UNIQUE,
    phone_index BLOB NOT NULL,
    sealed BLOB NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE (org_id, phone_index));
CREATE INDEX IF NOT EXISTS drivers_phone ON drivers(phone_index);
CREATE TABLE IF NOT EXISTS driver_codes (
    driver_id INTEGER PRIMARY KEY REFERENCES drivers(id),
    code_hash TEXT NOT NULL,
    expires REAL NOT NULL,
    used REAL);
CREATE TABLE IF NOT EXISTS code_failures (
    kind TEXT NOT NULL,
    subject BLOB NOT NULL,
    at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS code_failures_subject ON code_failures(kind, subject, at);
CREATE TABLE IF NOT EXISTS used_nonces (
    nonce TEXT NOT NULL,
    purpose TEXT NOT NULL,
    job_id TEXT NOT NULL,
    by_org INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (nonce, purpose));
CREATE TABLE IF NOT EXISTS gate_outs (
    job_id TEXT NOT NULL,
    container TEXT NOT NULL,
    terminal INTEGER NOT NULL,
    at INTEGER NOT NULL,
    op_key TEXT NOT NULL,
    PRIMARY KEY (container, job_id));
CREATE TABLE IF NOT EXISTS ccrn_bindings (
    ccrn_index BLOB PRIMARY KEY,
    job_id TEXT NOT NULL,
    vehicle_index BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    job_id TEXT PRIMARY KEY,
    warehouse INTEGER NOT NULL,
    at INTEGER NOT NULL,
    body BLOB NOT NULL);
"""


class LandStore(Store):
    """The land leg's tables (module doc)."""

    def __init__(self, path: str | Path, *, secret: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if secret is not None and len(secret) != 32:
            raise ValueError("the land store's secret is 32 bytes")
        super().__init__(path, SCHEMA)
        self.path = Path(path)
        self._db.row_factory = sqlite3.Row
        self.clock = clock
        self._lock = threading.Lock()
        self._cipher = None if secret is None else AESGCM(
            hmac.new(secret, b"portledger/land/bodies", hashlib.sha256).digest())
        self._index_key = hmac.new(secret or b"", b"portledger/land/index",
                                   hashlib.sha256).digest()

    # -- sealing ----------------------------------------------------------------------------
    def _index(self, text: str) -> bytes:
        """The keyed hash a phone number or address is looked up by (never stored in clear)."""
        return hmac.new(self._index_key, text.encode(), hashlib.sha256).digest()

    def _seal(self, value: Any, where: str) -> bytes:
        """AES-256-GCM of a JSON value, bound to its row (nonce first)."""
        data = json.dumps(value).encode()
        if self._cipher is None:
            return data
        nonce = os.urandom(12)
        return nonce + self._cipher.encrypt(nonce, data, where.encode())

    def _open(self, blob: bytes, where: str) -> Any:
        data = bytes(blob)
        if self._cipher is not None:
            try:
                data = self._cipher.decrypt(data[:12], data[12:], where.encode())
            except InvalidTag:
                raise LandStoreError(f"{where} in {self.path} does not decrypt: damaged, moved,"
                                     " or another secret") from None
        return json.loads(data)

    # -- jobs -------------------------------------------------------------------------------
    def add_job(self, job: Job) -> str | None:
        """Store a new job; None, or (nothing stored) the job holding its CCRN for another
        vehicle. A CCRN is bound to one vehicle: the same vehicle's CCRN moves to the new job."""
        with self._lock, self._transaction():
            if job.ccrn:
                row = self._db.execute("SELECT job_id, vehicle_index FROM ccrn_bindings WHERE"
                                       " ccrn_index = ?", (self._index(job.ccrn),)).fetchone()
                if row is not None and bytes(row[1]) != self._index(job.vehicle):
                    return str(row[0])
            self._db.execute(
                "INSERT INTO jobs (id, org_id, haulier, terminal, warehouse, driver_id, state,"
                " nonce, body, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (job.id, job.org_id, job.haulier, job.pickup.org, job.delivery.org,
                 job.driver_id, job.state, job.nonce, self._seal(job.body(), f"jobs:{job.id}"),
                 job.created,
                 job.created))
            self._db.executemany("INSERT INTO job_containers (job_id, container) VALUES (?,?)",
                                 [(job.id, c) for c in job.containers])
            if job.ccrn:
                self._db.execute(
                    "INSERT INTO ccrn_bindings (ccrn_index, job_id, vehicle_index) VALUES"
                    " (?,?,?) ON CONFLICT (ccrn_index) DO UPDATE SET job_id = excluded.job_id",
                    (self._index(job.ccrn), job.id, self._index(job.vehicle)))
        return None

    def _job(self, row: sqlite3.Row) -> Job:
        body = self._open(row["body"], f"jobs:{row['id']}")
        return job_from_row(row["id"], row["org_id"], row["haulier"], body,
                            row["state"], row["driver_id"], row["nonce"], row["created"],
                            row["reason"])

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def jobs(self, *, org_id: int | None = None, driver_id: int | None = None,
             terminal: int | None = None, warehouse: int | None = None,
             container: str | None = None, limit: int = 200) -> list[Job]:
        """Jobs matching every given filter, newest first."""
        where, args = [], []
        for column, value in (("j.org_id", org_id), ("j.driver_id", driver_id),
                              ("j.terminal", terminal), ("j.warehouse", warehouse),
                              ("c.container", container)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        join = " JOIN job_containers c ON c.job_id = j.id" if container is not None else ""
        sql = (f"SELECT j.* FROM jobs j{join}"  # noqa: S608 (constant column names)
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY j.created DESC, j.id LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [self._job(r) for r in rows]

    def holder(self, container: str) -> str | None:
        """The job holding ``container``'s release: the oldest open job naming it (planned or
        picked up; a container released to one job cannot be gated out on another)."""
        with self._lock:
            row = self._db.execute(
                "SELECT j.id FROM jobs j JOIN job_containers c ON c.job_id = j.id"
                " WHERE c.container = ? AND j.state IN ('planned', 'picked-up')"
                " ORDER BY j.created, j.rowid LIMIT 1", (container,)).fetchone()
        return None if row is None else str(row[0])

    def update_job(self, job_id: str, **changes: Any) -> None:
        """Set ``state``, ``driver_id``, ``nonce`` or ``reason`` of a job."""
        allowed = {"state", "driver_id", "nonce", "reason"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"a job's changeable columns are {sorted(allowed)}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self._lock, self._transaction():
            self._db.execute(f"UPDATE jobs SET {sets}, updated = ? WHERE id = ?",  # noqa: S608
                             (*changes.values(), int(self.clock()), job_id))

    def ccrn_holder(self, ccrn: str) -> str | None:
        """The job a CCRN is bound to, if any."""
        with self._lock:
            row = self._db.execute("SELECT job_id FROM ccrn_bindings WHERE ccrn_index = ?",
                                   (self._index(ccrn),)).fetchone()
        return None if row is None else str(row[0])

    def bind_ccrn(self, job: Job, ccrn: str, nonce: str) -> str | None:
        """Bind ``ccrn`` to ``job`` (its body's CCRN) with a new token ``nonce``, in one
        transaction; the job holding it instead when that job's vehicle is another (nothing is
        changed then), else None. The same vehicle's CCRN moves to this job."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT job_id, vehicle_index FROM ccrn_bindings WHERE"
                                   " ccrn_index = ?", (self._index(ccrn),)).fetchone()
            if row is not None and row[0] != job.id and \
                    bytes(row[1]) != self._index(job.vehicle):
                return str(row[0])
            if job.ccrn and job.ccrn != ccrn:  # the job's earlier CCRN is free again
                self._db.execute("DELETE FROM ccrn_bindings WHERE ccrn_index = ? AND"
                                 " job_id = ?", (self._index(job.ccrn), job.id))
            self._db.execute(
                "INSERT INTO ccrn_bindings (ccrn_index, job_id, vehicle_index) VALUES (?,?,?)"
                " ON CONFLICT (ccrn_index) DO UPDATE SET job_id = excluded.job_id,"
                " vehicle_index = excluded.vehicle_index",
                (self._index(ccrn), job.id, self._index(job.vehicle)))
            body = {**job.body(), "ccrn": ccrn}
            self._db.execute("UPDATE jobs SET body = ?, nonce = ?, updated = ? WHERE id = ?",
                             (self._seal(body, f"jobs:{job.id}"), nonce, int(self.clock()),
                              job.id))
        return None

    # -- drivers ----------------------------------------------------------------------------
    def add_driver(self, org_id: int, user_id: int, name: str, phone: str) -> Driver:
        with self._lock, self._transaction():
            cur = self._db.execute(
                "INSERT INTO drivers (org_id, user_id, phone_index, sealed, created)"
                " VALUES (?,?,?,?,?)",
                (org_id, user_id, self._index(phone),
                 self._seal({"name": name, "phone": phone}, f"drivers:{org_id}:{user_id}"),
                 int(self.clock())))
        return Driver(int(cur.lastrowid or 0), org_id, user_id, name, phone)

    def has_phone(self, org_id: int, phone: str) -> bool:
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM drivers WHERE org_id = ? AND phone_index = ?",
                (org_id, self._index(phone))).fetchone() is not None

    def _driver(self, row: sqlite3.Row) -> Driver:
        person = self._open(row["sealed"], f"drivers:{row['org_id']}:{row['user_id']}")
        return Driver(row["id"], row["org_id"], row["user_id"], person["name"], person["phone"])

    def driver(self, driver_id: int) -> Driver | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM drivers WHERE id = ?",
                                   (driver_id,)).fetchone()
        return None if row is None else self._driver(row)

    def driver_of_user(self, user_id: int) -> Driver | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM drivers WHERE user_id = ?",
                                   (user_id,)).fetchone()
        return None if row is None else self._driver(row)

    def drivers(self, org_id: int) -> list[Driver]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM drivers WHERE org_id = ? ORDER BY id",
                                    (org_id,)).fetchall()
        return [self._driver(r) for r in rows]

    def set_code(self, driver_id: int, code_hash: str, expires: float) -> None:
        """The driver's one live sign-in code (replacing any earlier one)."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO driver_codes (driver_id, code_hash, expires, used) VALUES (?,?,?,"
                " NULL) ON CONFLICT (driver_id) DO UPDATE SET code_hash = excluded.code_hash,"
                " expires = excluded.expires, used = NULL", (driver_id, code_hash, expires))

    def live_codes(self, phone: str) -> list[tuple[Driver, str]]:
        """Drivers with this phone and an unused, unexpired code, with the code's hash."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.*, k.code_hash FROM drivers d JOIN driver_codes k ON k.driver_id = d.id"
                " WHERE d.phone_index = ? AND k.used IS NULL AND k.expires > ?"
                " ORDER BY d.id LIMIT 4", (self._index(phone), self.clock())).fetchall()
        return [(self._driver(r), r["code_hash"]) for r in rows]

    def use_code(self, driver_id: int, code_hash: str) -> bool:
        """Mark the code used; False if it was used (or replaced) meanwhile."""
        with self._lock, self._transaction():
            cur = self._db.execute(
                "UPDATE driver_codes SET used = ? WHERE driver_id = ? AND code_hash = ?"
                " AND used IS NULL AND expires > ?",
                (self.clock(), driver_id, code_hash, self.clock()))
        return cur.rowcount == 1

    def failures(self, kind: str, subject: str, since: float) -> list[float]:
        """Times of failed sign-ins of a phone or an address since ``since``."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT at FROM code_failures WHERE kind = ? AND subject = ? AND at > ?"
                " ORDER BY at", (kind, self._index(subject), since))]

    def record_failure(self, phone: str, address: str, keep: float) -> None:
        now = self.clock()
        with self._lock, self._transaction():
            self._db.execute("INSERT INTO code_failures (kind, subject, at) VALUES"
                             " ('phone', ?, ?), ('address', ?, ?)",
                             (self._index(phone), now, self._index(address), now))
            self._db.execute("DELETE FROM code_failures WHERE at < ?", (now - keep,))

    # -- gates ------------------------------------------------------------------------------
    def used(self, nonce: str, purpose: str) -> tuple[str, int, int] | None:
        """(job, organisation, time) of the nonce's use for ``purpose``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id, by_org, at FROM used_nonces WHERE nonce = ? AND purpose = ?",
                (nonce, purpose)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def record_gate_out(self, job_id: str, nonce: str, terminal: int, at: int,
                        keys: dict[str, str]) -> bool:
        """Use the nonce for ``gate-out`` and record each container's gate-out, and the job as
        picked up, in one transaction; False if the nonce was used meanwhile."""
        with self._lock, self._transaction():
            try:
                self._db.execute("INSERT INTO used_nonces (nonce, purpose, job_id, by_org, at)"
                                 " VALUES (?, 'gate-out', ?, ?, ?)",
                                 (nonce, job_id, terminal, at))
            except sqlite3.IntegrityError:
                return False
            self._db.executemany(
                "INSERT OR IGNORE INTO gate_outs (job_id, container, terminal, at, op_key)"
                " VALUES (?,?,?,?,?)", [(job_id, c, terminal, at, k) for c, k in keys.items()])
            self._db.execute("UPDATE jobs SET state = 'picked-up', updated = ? WHERE id = ?",
                             (at, job_id))
        return True

    def gate_outs(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM gate_outs WHERE job_id = ? ORDER BY container",
                                    (job_id,)).fetchall()
        return [dict(r) for r in rows]

    def gated_out_on(self, container: str) -> str | None:
        """The job a container was gated out on here, if any (the latest)."""
        with self._lock:
            row = self._db.execute("SELECT job_id FROM gate_outs WHERE container = ?"
                                   " ORDER BY at DESC LIMIT 1", (container,)).fetchone()
        return None if row is None else str(row[0])

    def record_receipt(self, job_id: str, nonce: str, warehouse: int, at: int,
                       body: dict[str, Any]) -> bool:
        """Use the nonce for ``receipt``, record the receipt and the job as delivered; False if
        the nonce was used meanwhile."""
        with self._lock, self._transaction():
            try:
                self._db.execute("INSERT INTO used_nonces (nonce, purpose, job_id, by_org, at)"
                                 " VALUES (?, 'receipt', ?, ?, ?)",
                                 (nonce, job_id, warehouse, at))
            except sqlite3.IntegrityError:
                return False
            self._db.execute("INSERT INTO receipts (job_id, warehouse, at, body) VALUES"
                             " (?,?,?,?)", (job_id, warehouse, at,
                                            self._seal(body, f"receipts:{job_id}")))
            self._db.execute("UPDATE jobs SET state = 'delivered', updated = ? WHERE id = ?",
                             (at, job_id))
        return True

    def receipt(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM receipts WHERE job_id = ?",
                                   (job_id,)).fetchone()
        if row is None:
            return None
        body: dict[str, Any] = self._open(row["body"], f"receipts:{job_id}")
        return {"warehouse": row["warehouse"], "at": row["at"], **body}


def open_store(data_dir: Path, *, secret: bytes | None,
               clock: Callable[[], float] = time.time) -> LandStore:
    """``<data_dir>/land.db``, bodies sealed under ``secret`` (the keystore's
    :data:`SECRET`)."""
    return LandStore(data_dir / "land.db", secret=secret, clock=clock)
