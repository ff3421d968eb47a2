"""Drivers' one-time sign-in codes in the real gateway: a code works once, expires, is replaced
by the next one, is stored only as an argon2id hash; wrong codes are throttled per phone number
and per client address (429 with Retry-After), even for the right code."""

from __future__ import annotations

from pathlib import Path

from gateway.accounts.model import HASHER
from tests.gateway.land.support import Land, Phone, add_driver, ok, refused, started
from tests.support.readside import FORWARDER, HAULIER, TERMINAL


async def test_a_code_is_single_use_expires_and_is_kept_hashed(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw", code_seconds=600)
    phone = Phone(land.client)
    try:
        driver, code = await add_driver(land, "Chan Tai Man", "9123 4567")
        stored = land.service.store._db.execute(
            "SELECT code_hash FROM driver_codes WHERE driver_id = ?", (driver,)).fetchone()[0]
        assert code not in stored and stored.startswith("$argon2id$")
        assert HASHER.verify(stored, code)
        # the driver's name and phone number are sealed at rest (the number is looked up by a
        # keyed hash)
        files = [tmp_path / "gw" / name for name in ("land.db", "land.db-wal")]
        raw = b"".join(f.read_bytes() for f in files if f.exists())
        assert b"Chan Tai Man" not in raw and b"91234567" not in raw and len(raw) > 4096
        sign_in = {"phone": "+852 9123-4567", "code": code}
        await ok(await phone.post("/v1/land/driver-session", json=sign_in))
        me = await ok(await phone.get("/v1/me"))
        assert me["role"] == "driver"
        again = await refused(await phone.post("/v1/land/driver-session", json=sign_in), 401,
                              "bad-code")
        assert "wrong, used or expired" in again["message"]
        # a new code replaces the last; it expires after code_seconds
        land.at(0)
        _, fresh = await _new_code(land, driver)
        land.at(601)
        await refused(await phone.post("/v1/land/driver-session",
                                       json={"phone": "91234567", "code": fresh}), 401,
                      "bad-code")
        land.at(1000)
        _, first = await _new_code(land, driver)
        _, second = await _new_code(land, driver)
        if first != second:
            await refused(await phone.post("/v1/land/driver-session",
                                           json={"phone": "91234567", "code": first}), 401,
                          "bad-code")
        await ok(await phone.post("/v1/land/driver-session",
                                  json={"phone": "91234567", "code": second}))
        # only the haulier's admins issue codes, for their own drivers
        await refused(await land.client.post(f"/v1/land/drivers/{driver}/code",
                                             headers=land.auth(FORWARDER)), 404,
                      "unknown-driver")
        await refused(await land.client.post(f"/v1/land/drivers/{driver}/code",
                                             headers=land.auth(TERMINAL)), 403,
                      "role-not-allowed")
    finally:
        await phone.close()
        await land.client.close()


async def test_wrong_codes_are_throttled_per_phone_and_per_address(tmp_path: Path) -> None:
    land = await started(tmp_path / "gw", code_attempts=3, address_attempts=5,
                         code_seconds=3600)
    phone = Phone(land.client)
    land.at(0)
    try:
        _, code = await add_driver(land, "Chan Tai Man", "91234567")
        for _ in range(3):
            await refused(await phone.post("/v1/land/driver-session",
                                           json={"phone": "91234567", "code": "00000000"}),
                          401, "bad-code")
        throttled = await phone.post("/v1/land/driver-session",
                                     json={"phone": "91234567", "code": code})
        assert throttled.status == 429 and int(throttled.headers["Retry-After"]) > 0
        assert (await throttled.json())["error"]["code"] == "code-throttled"
        # the window moves on: the right code works again
        land.at(901)
        await ok(await phone.post("/v1/land/driver-session",
                                  json={"phone": "91234567", "code": code}))
        # per address: wrong codes for many phones from one address
        for n in range(5):
            await refused(await phone.post("/v1/land/driver-session", json={
                "phone": f"6123456{n}", "code": "00000000"}), 401, "bad-code")
        await refused(await phone.post("/v1/land/driver-session", json={
            "phone": "61234569", "code": "00000000"}), 429, "code-throttled")
    finally:
        await phone.close()
        await land.client.close()


async def _new_code(land: Land, driver: int) -> tuple[int, str]:
    made = await ok(await land.client.post(f"/v1/land/drivers/{driver}/code",
                                           headers=land.auth(HAULIER)), 201)
    return driver, str(made["code"])
