"""Customs status events published under a declaration's keyed alias (``events_of(..., alias=)``).

The declarations feature publishes its results so that no event names the declaration number:
the alias is the declaration event's subject and every event's related declaration, the number
is only in the sealed details; a feed's own message (no alias) keeps naming the number. An
alias that is not a declaration reference refuses the message like any bad reference.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts.cargo import subject_key
from gateway.declarations import onchain
from gateway.events.model import Reference, to_cargo_input
from gateway.feeds import customs
from gateway.feeds.model import MessageError

NUMBER = "530020261000000123"
ALIAS = onchain.alias(bytes(range(32)), "cn-itsw", NUMBER)
MESSAGE: dict[str, Any] = {
    "declarationNumber": NUMBER, "status": "HELD", "time": "2026-12-07T10:00:00+08:00",
    "billOfLading": "PCOL1234567", "containers": ["CSQU3054383", "MSKU1234565"],
    "reason": "规格型号 missing", "messageId": "decl-1-queried"}


def test_the_alias_replaces_the_number_everywhere_but_the_details() -> None:
    events = customs.events_of(MESSAGE, alias=ALIAS)
    assert [(e.subject.kind, e.subject.value) for e in events] == [
        ("declaration", ALIAS), ("mbl", "PCOL1234567"), ("container", "CSQU3054383"),
        ("container", "MSKU1234565")]
    assert all(e.event_type == "CUSTOMS.CUSH" for e in events)
    for e in events:
        assert e.details["declarationNumber"] == NUMBER
        assert e.details["reason"] == "规格型号 missing"
        refs = [e.subject, *e.related]
        assert Reference("declaration", NUMBER) not in refs
        assert Reference("declaration", ALIAS) in refs
        # what goes on chain in clear: the subject key, type, time, location
        cargo = to_cargo_input(e, b"", b"\x00" * 32)
        assert cargo.subject != subject_key(NUMBER)
    assert events[0].subject.key == subject_key(ALIAS)
    assert events[0].details["containers"] == ["CSQU3054383", "MSKU1234565"]


def test_a_feed_message_still_names_its_number() -> None:
    events = customs.events_of(MESSAGE)
    assert events[0].subject == Reference("declaration", NUMBER)
    assert all(Reference("declaration", NUMBER) in e.related for e in events[1:])
    assert all("declarationNumber" not in e.details for e in events)


def test_the_alias_is_a_declaration_reference_of_its_salt_authority_and_number() -> None:
    assert len(ALIAS) == 35 and ALIAS.startswith(onchain.ALIAS_PREFIX) and ALIAS.isalnum()
    assert onchain.alias(bytes(range(32)), "cn-itsw", NUMBER) == ALIAS  # deterministic
    others = {onchain.alias(bytes(32), "cn-itsw", NUMBER),
              onchain.alias(bytes(range(32)), "hk-tdec", NUMBER),
              onchain.alias(bytes(range(32)), "cn-itsw", NUMBER[:-1] + "4")}
    assert ALIAS not in others and len(others) == 3
    with pytest.raises(ValueError, match="32 bytes"):
        onchain.alias(b"short", "cn-itsw", NUMBER)


@pytest.mark.parametrize("alias", ["", "PLD-" + "A" * 40, "bad alias!"])
def test_a_bad_alias_refuses_the_message(alias: str) -> None:
    with pytest.raises(MessageError) as caught:
        customs.events_of(MESSAGE, alias=alias)
    assert caught.value.code == "invalid-reference"
