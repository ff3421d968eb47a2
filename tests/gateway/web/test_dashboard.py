"""“My shipments”: a signed-in user's watch list on the landing page — added by reference,
each row's last milestone in words, ETA, customs status and open alerts, removed again; per
user; a reference nobody shared shows "Nothing you may see" exactly as tracking says; anonymous
visitors and API keys get the track box."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.appkeys import ACCOUNTS
from gateway.web.dashboard import MAX_WATCHED, TooManyWatched, WatchList
from tests.gateway.web.story import (
    BOX2,
    CARRIER,
    COMPETITOR,
    DECLARATION,
    HBL,
    PASSWORD,
    TRADER,
    USERS,
    started,
)
from tests.gateway.web.test_track_page import page, visible_text
from tests.support.accounts import login


def rows(markup: str) -> list[str]:
    body = markup.split('<table id=watchlist>', 1)
    if len(body) == 1:
        return []
    return [visible_text(r) for r in re.findall(r"<tr.*?</tr>", body[1].split("</tbody>")[0],
                                                 re.S)][1:]


async def test_watch_list_per_user(tmp_path: Path) -> None:
    client, port, ids = await started(tmp_path / "gw")
    try:
        anonymous = await page(client, "/")
        assert 'data-page="landing"' in anonymous and "Where is my cargo?" in anonymous
        await login(client, USERS[TRADER], PASSWORD)
        first = await page(client, "/")
        assert 'data-page="dashboard"' in first and "You watch nothing yet." in first
        token = re.search(r'name=csrf-token content="([^"]+)"', first)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1)}
        for ref in (HBL.lower(), "PCOU 200002 6", DECLARATION):
            resp = await client.post("/v1/watchlist", json={"reference": ref}, headers=headers)
            assert resp.status == 201, await resp.text()
        again = await client.post("/v1/watchlist", json={"reference": HBL}, headers=headers)
        assert again.status == 200 and (await again.json())["added"] is False
        bad = await client.post("/v1/watchlist", json={"reference": "<b>"}, headers=headers)
        assert bad.status == 422
        listed = await (await client.get("/v1/watchlist")).json()
        assert sorted(w["reference"] for w in listed["watched"]) == sorted(
            [HBL, BOX2, DECLARATION])
        assert {w["kind"] for w in listed["watched"]} >= {"container"}

        mine = await page(client, "/?lang=en")
        found = {r.split()[0]: r for r in rows(mine)}
        assert set(found) == {HBL, BOX2, DECLARATION}
        assert "Gated out at Kwai Tsing Container Terminal (HKHKG)" in found[HBL]
        assert "6 Nov 2026, 18:30 HKT" in found[HBL] and "Customs released" in found[HBL]
        assert "Discharged from PACIFIC HARMONY" in found[BOX2]
        assert "Customs hold" in found[DECLARATION]
        zh = await page(client, "/?lang=zh-Hant")
        assert "我的貨運" in zh and "海關已放行" in zh

        # the carrier's user has its own (empty) list; the competitor's list shows nothing of
        # what was named to the trader
        await login(client, USERS[CARRIER], PASSWORD)
        assert "You watch nothing yet." in await page(client, "/?lang=en")
        await login(client, USERS[COMPETITOR], PASSWORD)
        theirs = await page(client, "/?lang=en")
        token = re.search(r'name=csrf-token content="([^"]+)"', theirs)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1)}
        for ref in (DECLARATION, "MSCU1234566"):
            resp = await client.post("/v1/watchlist", json={"reference": ref}, headers=headers)
            assert resp.status == 201, await resp.text()
        theirs = await page(client, "/")
        found = {r.split()[0]: r for r in rows(theirs)}
        assert "Nothing you may see" in found["MSCU1234566"]
        assert "Customs hold" not in theirs and "document check" not in theirs

        # removing
        await login(client, USERS[TRADER], PASSWORD)
        mine = await page(client, "/")
        token = re.search(r'name=csrf-token content="([^"]+)"', mine)
        assert token is not None
        resp = await client.post("/v1/watchlist/remove", json={"reference": BOX2},
                                 headers={"X-CSRF-Token": token.group(1)})
        assert resp.status == 204
        assert {r.split()[0] for r in rows(await page(client, "/"))} == {HBL, DECLARATION}
        # an API key has no watch list
        _, key = client.app[ACCOUNTS].create_api_key(port.orgs[TRADER], ["tracking:read"], "k")
        client.session.cookie_jar.clear()
        keyed = await client.get("/v1/watchlist", headers={"Authorization": f"Bearer {key}"})
        assert keyed.status == 403
    finally:
        await client.close()


def test_the_store_bounds_each_users_list(tmp_path: Path) -> None:
    store = WatchList(tmp_path / "watchlist.db")
    try:
        for n in range(MAX_WATCHED):
            assert store.add(7, 1, f"REF{n:04d}", "shipment", 1_000 + n)
        assert not store.add(7, 1, "REF0000", "shipment", 5_000)  # already watched
        with pytest.raises(TooManyWatched):
            store.add(7, 1, "ONEMORE", "shipment", 5_000)
        assert store.add(8, 1, "ONEMORE", "shipment", 5_000)  # another user's list
        assert [w.value for w in store.of(7, 1)][:2] == ["REF0099", "REF0098"]  # newest first
        assert store.of(7, 2) == []  # a user moved to another organisation sees none of it
        assert store.remove(7, "REF0000") and not store.remove(7, "REF0000")
        assert store.add(7, 1, "ONEMORE", "shipment", 6_000)
    finally:
        store.close()
