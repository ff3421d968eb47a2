"""Mutated event files (byte flips, truncation, insertion, line shuffles) through the CLI's
reader, the facts and the rules: every bad line is a LineError, nothing else ever escapes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.alerts.cli import LineError, read_events
from gateway.alerts.facts import build_facts
from gateway.alerts.rules import Settings, evaluate
from gateway.alerts.tariff import load_tariff
from tests.gateway.alerts.builders import hk

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[3]
SAMPLES = [(DATA / name).read_bytes()
           for name in ("port_story.jsonl", "feed_parse_lines.jsonl", "bad_lines.jsonl")]
TARIFF = load_tariff((ROOT / "examples/tariffs/example_hk_storage_overrides.json").read_bytes())


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "shuffle", "delete"]))
        if action == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate" and data:
            data = data[:draw(st.integers(0, len(data)))]
        elif action == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.sampled_from([b"\n", b"{", b"\"", b"\xff", b"-1e999", b"null",
                                              b"[]", b"\"temperature\":", b"\"defrost\":true,",
                                              b"\"retracts\":3,", b"\"setpoint\":\"x\","]))
        elif action == "shuffle":
            lines = bytes(data).split(b"\n")
            data = bytearray(b"\n".join(draw(st.permutations(lines))))
        elif action == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 40))]
    return bytes(data)


def _through_everything(data: bytes, now: int) -> None:
    observed, measured, bad = read_events(io.BytesIO(data), "file")
    assert all(isinstance(b, LineError) and b.line >= 1 for b in bad)
    facts = build_facts(observed, measured)
    result = evaluate(facts, Settings(), TARIFF, None, now)
    for alert in result.alerts:
        alert.to_json()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.integers(hk("2026-11-20 00:00"), hk("2027-01-31 00:00")))
def test_mutations_never_escape(data: bytes, now: int) -> None:
    _through_everything(data, now)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.integers(hk("2025-01-01 00:00"), hk("2028-12-31 00:00")))
def test_mutations_never_escape_long(data: bytes, now: int) -> None:
    _through_everything(data, now)
