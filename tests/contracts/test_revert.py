"""Revert reasons decoded from revert data (contracts/revert.py)."""

from __future__ import annotations

from eth_abi import encode

from contracts.revert import ERROR_SELECTOR, revert_data, revert_message, revert_reason


def test_error_string_is_the_reason() -> None:
    data = ERROR_SELECTOR + encode(["string"], ["too big"])
    assert revert_reason(data) == "too big"
    assert revert_message(data) == "execution reverted: too big"


def test_no_reason_without_error_string() -> None:
    for data in (b"", b"\x12\x34\x56\x78", ERROR_SELECTOR, ERROR_SELECTOR + b"\x00" * 31):
        assert revert_reason(data) is None
        assert revert_message(data) == "execution reverted"
    not_utf8 = ERROR_SELECTOR + (32).to_bytes(32, "big") + (2).to_bytes(32, "big") + b"\xff\xfe" + b"\x00" * 30
    assert revert_reason(not_utf8) is None


def test_revert_data_of_an_exception() -> None:
    assert revert_data(ValueError(b"\x01\x02")) == b"\x01\x02"
    assert revert_data(ValueError()) == b""
    assert revert_data(ValueError("text")) == b""
