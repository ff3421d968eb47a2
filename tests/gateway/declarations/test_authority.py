"""The SIMULATED authority service as its own process on loopback, and the HTTP connector
against it: labelled answers, validation and rejection with reasons, official numbers in their
layouts and sequences, idempotent lodging, asynchronous statuses, a query raised, state kept
across a restart of the service, and injected time-outs, garbage and errors seen by the
connector as retryable failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devnet.authority import AuthorityServer, problems
from gateway.declarations import codes
from gateway.declarations.connectors import ConnectorError, HttpAuthorityConnector

USCC = "91350100M000100Y43"


def china(model: str = "X1", uscc: str = USCC, flag: str = "E") -> dict[str, Any]:
    return {"key": "itsw:B1", "authority": "cn-itsw",
            "fields": {"IEFlag": flag, "CustomMaster": "5300", "TradeCoScc": uscc},
            "lines": [{"GNo": 1, "CodeTS": "8517130000", "GModel": model}]}


def tdec(form: str = "1A", hkhs: str = "03061790") -> dict[str, Any]:
    return {"key": "tdec:B1:1A", "authority": "hk-tdec",
            "fields": {"form": form, "importer": "Sino Trading"},
            "lines": [{"seq": 1, "hkhsCode": hkhs}]}


def rocars(vehicle: str = "AB1234") -> dict[str, Any]:
    return {"key": "rocars:B1", "authority": "hk-rocars",
            "fields": {"packages": 3, "packageDescription": "CT", "goodsDescription": "phones",
                       "consignor": "A", "consignorAddress": "a", "consignee": "B",
                       "consigneeAddress": "b", "expectedDate": "2026-12-08",
                       "vehicle": vehicle, "direction": "export"},
            "lines": []}


@pytest.mark.parametrize(("authority", "document", "found"), [
    ("cn-itsw", china(), []),
    ("cn-itsw", china(uscc="91350100M000100Y40"), ["统一社会信用代码"]),
    ("cn-itsw", tdec(), ["not a cn-itsw declaration"]),
    ("hk-tdec", tdec(), []),
    ("hk-tdec", tdec(form="3"), ["form '3'"]),
    ("hk-tdec", tdec(hkhs="0306"), ["HKHS"]),
    ("hk-rocars", rocars(), []),
    ("hk-rocars", rocars(vehicle="AB 1234"), ["vehicle registration"]),
    ("hk-tdec", None, ["not a hk-tdec declaration"]),
])
def test_validation(authority: str, document: Any, found: list[str]) -> None:
    said = problems(authority, document)
    assert len(said) == len(found) and all(f in s for f, s in zip(found, said, strict=True))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AuthorityServer]:
    running = AuthorityServer(tmp_path / "authority", accept_after=0.2, release_after=0.5,
                              query_after=0.3).start()
    try:
        yield running
    finally:
        running.stop()


async def poll(session: aiohttp.ClientSession, url: str, until: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with session.get(url) as resp:
            assert resp.headers["X-Simulated"] == "true"
            answer: dict[str, Any] = await resp.json()
        if answer["status"] == until:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never reached {until}: {answer}")


async def test_lodging_numbers_and_statuses(server: AuthorityServer, tmp_path: Path) -> None:
    base = f"{server.url}/v1"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/cn-itsw/submissions",
                                json={"submissionId": "sub00000001", "document": china()}) as r:
            first = await r.json()
        assert r.status == 202 and first["status"] == "received" and first["simulated"] is True
        assert "SIMULATED" in first["notice"]
        done = await poll(session, f"{base}/cn-itsw/submissions/sub00000001", "released")
        number = done["number"]
        assert codes.check_cn_declaration_number(number) is None
        assert number[:4] == "5300" and number[4:8] == time.strftime("%Y") and number[8] == "0"
        assert [h["status"] for h in done["history"]] == ["received", "accepted", "released"]
        # the same id again: the same submission, the same number
        async with session.post(f"{base}/cn-itsw/submissions",
                                json={"submissionId": "sub00000001", "document": china()}) as r:
            assert (await r.json())["number"] == number
        # the next import declaration takes its own sequence; a query comes before the release
        async with session.post(f"{base}/cn-itsw/submissions", json={
                "submissionId": "sub00000002", "document": china(model="", flag="I")}) as r:
            assert r.status == 202
        queried = await poll(session, f"{base}/cn-itsw/submissions/sub00000002", "queried")
        assert "规格型号" in queried["reasons"][0] and queried["number"][8] == "1"
        assert int(queried["number"][9:]) == 1  # its own (import) sequence
        await poll(session, f"{base}/cn-itsw/submissions/sub00000002", "released")
        # rejected with reasons; TDEC and CCRN numbers in their layouts
        async with session.post(f"{base}/cn-itsw/submissions", json={
                "submissionId": "sub00000003", "document": china(uscc="91350100M000100Y40")}):
            pass
        rejected = await poll(session, f"{base}/cn-itsw/submissions/sub00000003", "rejected")
        assert rejected["number"] is None and "check character" in rejected["reasons"][0]
        for authority, document, check in (("hk-tdec", tdec(), codes.check_tdec_reference),
                                           ("hk-rocars", rocars(), codes.check_ccrn)):
            async with session.post(f"{base}/{authority}/submissions", json={
                    "submissionId": "sub00000004", "document": document}):
                pass
            answer = await poll(session, f"{base}/{authority}/submissions/sub00000004",
                                "released")
            assert check(answer["number"]) is None
        # malformed envelopes and unknown things
        async with session.post(f"{base}/cn-itsw/submissions", json={"submissionId": "x"}) as r:
            assert r.status == 400
        async with session.post(f"{base}/colour/submissions", json={}) as r:
            assert r.status == 404
        async with session.get(f"{base}/cn-itsw/submissions/nope0000") as r:
            assert r.status == 404
    # a restart keeps every number
    server.stop()
    server.start()
    async with aiohttp.ClientSession() as session:
        again = await poll(session, f"{base}/cn-itsw/submissions/sub00000001", "released")
        assert again["number"] == number


async def test_connector_sees_faults_as_retryable(server: AuthorityServer) -> None:
    async with aiohttp.ClientSession() as session:
        connector = HttpAuthorityConnector("cn-itsw", server.url, session, timeout_seconds=0.5)
        faults = f"{server.url}/v1/admin/faults"
        for kind, said in (("timeout", "no answer within"), ("garbage", "not JSON"),
                           ("error", "HTTP 500")):
            async with session.post(faults, json={kind: 1}):
                pass
            with pytest.raises(ConnectorError, match=said) as caught:
                await connector.submit("sub00000009", china())
            assert caught.value.retryable
        answer = await connector.submit("sub00000009", china())
        assert answer.status == "received" and answer.simulated
        with pytest.raises(ConnectorError) as refused:
            await connector.submit("bad", china())  # the envelope is refused: not retryable
        assert refused.value.retryable is False
    # nothing listens: retryable
    server.stop()
    async with aiohttp.ClientSession() as session:
        connector = HttpAuthorityConnector("cn-itsw", server.url, session, timeout_seconds=0.5)
        with pytest.raises(ConnectorError) as down:
            await connector.status("sub00000009")
        assert down.value.retryable
