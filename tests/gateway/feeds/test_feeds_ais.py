"""AIS NMEA adapter: real logs against GPSD's independent decode, table tests, fuzzing.

Real data (``tests/data/ais``, see SOURCES.md): GPSD's ``sample.aivdm`` with its decode
``sample.aivdm.js.chk`` and the receiver log ``ais-nmea.log`` with the daemon's output
``ais-nmea.log.chk`` (BSD-2); pyais's sample files (MIT). Every other sentence here is ours,
written with pyais's encoder by the helpers below.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyais import decode
from pyais.encode import encode_dict
from pyais.messages import TagBlock
from pyais.util import checksum

from gateway.events.model import Reference
from gateway.feeds import ais, formats
from gateway.feeds.model import ParseResult
from gateway.telemetry.model import Reading, from_json

DATA = Path(__file__).parents[2] / "data" / "ais"
T0 = 1_775_000_000  # 2026-03-31T23:33:20Z: received_at of every test parse

#: Every error code the adapter may give (``wrong-format`` for a file that is not AIS at all).
CODES = {
    "bad-checksum", "empty-payload", "bad-sentence", "not-nmea", "line-too-long",
    "orphan-fragment", "incomplete-message", "bad-length", "bad-message",
    "position-unavailable", "position-out-of-range", "wrong-format",
}


def _read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _parse(text: str | bytes, **kw: Any) -> ParseResult:
    data = text.encode() if isinstance(text, str) else text
    return ais.parse(data, received_at=kw.pop("received_at", T0), **kw)


# -- our sentences (pyais's encoder) ---------------------------------------------------------
def _position(mmsi: int = 477123400, *, msg_type: int = 1, channel: str = "A", **fields: Any,
              ) -> str:
    data = {"type": msg_type, "mmsi": mmsi, "lat": 22.3, "lon": 114.1, "speed": 12.3,
            "course": 181.0, "heading": 180, "status": 0, **fields}
    [line] = encode_dict(data, talker_id="AI", sentence_type="VDM", radio_channel=channel)
    return line


def _static(mmsi: int = 477123400, imo: int = 9321483, *, seq_id: int = 3, channel: str = "A",
            **fields: Any) -> list[str]:
    data = {"type": 5, "mmsi": mmsi, "imo": imo, "callsign": "H3RC", "shipname": "EVER GIVEN",
            "ship_type": 70, "to_bow": 200, "to_stern": 200, "to_port": 30, "to_starboard": 29,
            "month": 11, "day": 24, "hour": 8, "minute": 15, "draught": 14.5,
            "destination": "HKHKG", **fields}
    lines = encode_dict(data, talker_id="AI", sentence_type="VDM", radio_channel=channel,
                        seq_id=seq_id)
    assert len(lines) == 2
    return lines


def _nmea(body: str, delimiter: str = "!") -> str:
    """A sentence with a correct checksum around ``body`` (``AIVDM,1,1,,A,...,0``)."""
    return f"{delimiter}{body}*{checksum(body.encode()):02X}"


def _tagged(line: str, **fields: Any) -> str:
    return "\\" + TagBlock.create_str(**fields) + "\\" + line


def _eta_parts(eta: dict[str, Any] | None) -> tuple[int, int, int, int]:
    if eta is None:
        return 0, 0, 24, 60
    return eta["month"], eta["day"], eta["hour"], eta["minute"]


def _gpsd_eta(text: str) -> tuple[int, int, int, int]:
    match = re.fullmatch(r"(\d\d)-(\d\d)T(\d\d):(\d\d)Z", text)
    assert match, text
    month, day, hour, minute = (int(x) for x in match.groups())
    return month, day, hour, minute


# -- real data against GPSD's decode ---------------------------------------------------------
def test_gpsd_sample_positions_match_gpsds_decode() -> None:
    result = _parse(_read("gpsd-sample.aivdm"))
    gpsd = [json.loads(line) for line in _read("gpsd-sample.aivdm.js.chk").splitlines()]
    theirs = [j for j in gpsd if j["type"] in ais.POSITION_TYPES]
    mine = [r for r in result.readings if r.type == "ais-position"]
    assert len(mine) == len(theirs) == 10
    for reading, j in zip(mine, theirs, strict=True):
        v = reading.values
        assert (v["msg_type"], v["mmsi"]) == (j["type"], j["mmsi"])
        assert v["lat"] == pytest.approx(j["lat"], abs=1e-6)
        assert v["lon"] == pytest.approx(j["lon"], abs=1e-6)
        assert v["sog"] == (None if j["speed"] >= 102.3 else pytest.approx(j["speed"]))
        assert v["cog"] == (None if j["course"] >= 360 else pytest.approx(j["course"]))
        assert v["heading"] == (None if j["heading"] == 511 else j["heading"])
        assert v["status"] == j.get("status")
        if "status" in j:
            assert v["status_name"].lower() == j["status_text"].lower()
        assert reading.subject is None and reading.time == T0


def test_gpsd_sample_static_data_matches_gpsds_decode() -> None:
    result = _parse(_read("gpsd-sample.aivdm"))
    gpsd = [json.loads(line) for line in _read("gpsd-sample.aivdm.js.chk").splitlines()]
    statics = [r for r in result.readings if r.type == "ais-static"]

    fives = [r.values for r in statics if r.values["msg_type"] == 5]
    theirs5 = [j for j in gpsd if j["type"] == 5]
    assert len(fives) == len(theirs5) == 3  # two of them with interleaved fragments
    for v, j in zip(fives, theirs5, strict=True):
        assert v["mmsi"] == j["mmsi"]
        assert v["imo"] == (str(j["imo"]) if j["imo"] else None)
        assert (v["callsign"], v["name"], v["destination"]) == (
            j["callsign"] or None, j["shipname"] or None, j["destination"] or None)
        assert v["ship_type"] == (j["shiptype"] or None)
        assert v["draught"] == (pytest.approx(j["draught"]) if j["draught"] else None)
        dims = v["dimensions"]
        assert [dims[k] for k in ("to_bow", "to_stern", "to_port", "to_starboard")] == [
            j["to_bow"], j["to_stern"], j["to_port"], j["to_starboard"]]
        assert _eta_parts(v["eta"]) == _gpsd_eta(j["eta"])

    [nineteen] = [r.values for r in statics if r.values["msg_type"] == 19]
    [j19] = [j for j in gpsd if j["type"] == 19]
    assert (nineteen["mmsi"], nineteen["name"], nineteen["ship_type"]) == (
        j19["mmsi"], j19["shipname"], j19["shiptype"])
    assert nineteen["dimensions"]["to_stern"] == j19["to_stern"]

    theirs24 = [j for j in gpsd if j["type"] == 24]
    assert len(theirs24) == 2
    for j in theirs24:
        joined = [r.values for r in statics if r.values["msg_type"] == 24
                  and r.values["mmsi"] == j["mmsi"] and r.values["part"] == "B"]
        assert joined
        for v in joined:
            assert (v["name"], v["callsign"], v["ship_type"]) == (
                j["shipname"], j["callsign"], j["shiptype"])
            assert (v["dimensions"]["to_stern"], v["dimensions"]["to_starboard"]) == (
                j["to_stern"], j["to_starboard"])
    # a part B whose part A never came: kept, without a name (GPSD waits for the A)
    [lonely] = [r.values for r in statics if r.values["mmsi"] == 271020195]
    assert lonely["name"] is None and lonely["callsign"]


def test_gpsd_sample_rejections_are_typed() -> None:
    result = _parse(_read("gpsd-sample.aivdm"))
    codes = {(e.line, e.code) for e in result.errors}
    # "That fragment misses part 1, yields nothing" (no '!' either); text after the checksum
    assert codes == {(978, "not-nmea"), (1080, "bad-checksum"), (1081, "bad-checksum")}
    assert result.stats["comments"] > 900 and result.stats["decoder_errors"] == 0
    assert result.stats["unsupported_type"] > 50  # types 4, 6-17, 20-23, 25-27: counted only


def _gpsd_daemon_pairs() -> list[tuple[list[int], dict[str, Any]]]:
    """(log line numbers of a message's sentences, GPSD's JSON for it) from the daemon's echo.

    The .chk echoes every input line and prints the JSON it decoded right after the sentence
    that completed a message; the n-th ``!`` line of the .chk is the n-th of the log.
    """
    log_lines = [n for n, line in enumerate(_read("gpsd-ais-nmea.log").splitlines(), start=1)
                 if line.startswith(b"!")]
    pairs: list[tuple[list[int], dict[str, Any]]] = []
    seen = 0
    run: list[int] = []
    after_sentence = False
    for line in _read("gpsd-ais-nmea.log.chk").decode().splitlines():
        if line.startswith("!"):
            run.append(log_lines[seen])
            seen += 1
            after_sentence = True
            continue
        if after_sentence and line.startswith('{"class":"AIS"'):
            pairs.append((run, json.loads(line)))
        run, after_sentence = [], False
    assert seen == len(log_lines) == 183
    return pairs


def test_gpsd_receiver_log_matches_the_daemons_decode() -> None:
    result = _parse(_read("gpsd-ais-nmea.log"))
    assert result.stats["decoder_errors"] == 0 and result.stats["other_sentences"] == 1313
    by_line: dict[int, list[Reading]] = {}
    for reading in result.readings:
        by_line.setdefault(reading.line, []).append(reading)
    errors = {e.line: e.code for e in result.errors}
    compared = 0
    for lines, j in _gpsd_daemon_pairs():
        first, last = lines[0], lines[-1]
        if j["type"] in ais.POSITION_TYPES:
            if j["lat"] == 91 * 600000 or j["lon"] == 181 * 600000:
                assert errors[first] == "position-unavailable"
                compared += 1
                continue
            [reading] = [r for r in by_line[first] if r.type == "ais-position"]
            v = reading.values
            assert (v["mmsi"], v["msg_type"]) == (j["mmsi"], j["type"])
            assert v["lat"] == pytest.approx(j["lat"] / 600000, abs=1e-6)
            assert v["lon"] == pytest.approx(j["lon"] / 600000, abs=1e-6)
            assert v["sog"] == (None if j["speed"] == 1023 else pytest.approx(j["speed"] / 10))
            assert v["cog"] == (None if j["course"] == 3600 else pytest.approx(j["course"] / 10))
            assert v["heading"] == (None if j["heading"] == 511 else j["heading"])
            assert v["status"] == j.get("status")
        elif j["type"] == 5:
            [reading] = by_line[first]
            v = reading.values
            assert (v["mmsi"], v["imo"]) == (j["mmsi"], str(j["imo"]) if j["imo"] else None)
            assert (v["name"], v["callsign"], v["destination"]) == (
                j["shipname"] or None, j["callsign"] or None, j["destination"] or None)
            assert v["ship_type"] == (j["shiptype"] or None)
            assert v["draught"] == (pytest.approx(j["draught"] / 10) if j["draught"] else None)
            assert _eta_parts(v["eta"]) == _gpsd_eta(j["eta"])
        elif j["type"] == 24:
            [reading] = by_line[last]
            v = reading.values
            assert (v["mmsi"], v["part"]) == (j["mmsi"], "B")
            assert (v["name"], v["callsign"], v["ship_type"]) == (
                j["shipname"], j["callsign"], j["shiptype"])
            assert [v["dimensions"][k] for k in ("to_bow", "to_stern", "to_port",
                                                 "to_starboard")] == [
                j["to_bow"], j["to_stern"], j["to_port"], j["to_starboard"]]
        else:  # types without a reading: neither a reading nor an error
            assert first not in by_line and first not in errors
        compared += 1
    assert compared >= 160


# -- pyais's samples ------------------------------------------------------------------------
def test_pyais_receiver_sample_counts_empty_payloads_and_unfinished_messages() -> None:
    result = _parse(_read("pyais-nmea_data_sample.txt"))
    s = result.stats
    assert s["sentences"] == 898 and s["decoder_errors"] == 0
    assert s["empty_payload"] == 100 == sum(e.code == "empty-payload" for e in result.errors)
    # type 5 first fragments whose second fragment never came: dropped and said so
    assert s["expired_groups"] == sum(e.code == "incomplete-message" for e in result.errors) > 0
    assert s["positions"] == sum(r.type == "ais-position" for r in result.readings) > 700
    assert {e.code for e in result.errors} <= {"empty-payload", "incomplete-message",
                                                "position-unavailable"}


def test_pyais_mixed_file_gps_sentences_garbage_and_tag_blocks() -> None:
    result = _parse(_read("pyais-mixed.txt"))
    by_code: dict[str, list[int]] = {}
    for e in result.errors:
        by_code.setdefault(e.code, []).append(e.line)
    assert by_code["not-nmea"] == [14, 21]  # "foobar", "IamNotAnAisMessage1111"
    assert result.stats["other_sentences"] == 4  # $GPGGA, $GPRTE, $GPR00, ...
    # the tag-block group g:1-2-27300 / g:2-2-27300: station only on the first sentence,
    # still one message (type 5 of MMSI 366913120 in two fragments)
    [five] = [r for r in result.readings if r.line == 24]
    assert five.values["msg_type"] == 5 and five.time == 1428621738
    assert "orphan-fragment" not in by_code
    # "\g:1-2-73874*A\..." : tag blocks whose checksum is wrong are refused
    assert set(by_code["bad-checksum"]) >= {23, 26, 27}


def test_gatehouse_wrappers_give_the_time() -> None:
    result = _parse(_read("pyais-gatehouse.nmea"))
    times = {r.line: r.time for r in result.readings}
    assert times[2] == 1210291200  # $PGHP,1,2008,5,9,0,0,0,... → 2008-05-09T00:00:00Z
    assert times[6] == T0  # no wrapper before it
    # "$PGHP,1,2009,..." keeps the 2008 checksum: refused, the next sentence has no wrapper
    assert [(e.line, e.code) for e in result.errors] == [(7, "bad-checksum")]
    assert times[8] == T0


def test_spire_tag_blocks_give_the_time_and_wrong_tag_checksums_are_refused() -> None:
    result = _parse(_read("pyais-spire-tag-blocks.nmea"))
    assert {r.time for r in result.readings} == {1503079517}
    bad = [e.line for e in result.errors if e.code == "bad-checksum"]
    # lines 1, 7, 8: tag blocks *55 and *52 where their text gives *53; line 4: the sentence's
    assert bad == [1, 4, 7, 8]
    assert result.stats["rejected_checksum"] == 4
    assert (result.stats["positions"], result.stats["statics"]) == (2, 1)
    # the last line is fragment 1 of 2: the text ends there
    assert result.errors[-1].line == 9 and result.errors[-1].code == "incomplete-message"


def test_tag_groups_station_and_signal_reports() -> None:
    result = _parse(_read("pyais-tag-groups.nmea"))
    assert result.stats["other_sentences"] == 2  # the $ARVSI signal reports
    # the first line is fragment 2 of a message whose fragment 1 is not in the file
    assert [(e.line, e.code) for e in result.errors][:1] == [(1, "orphan-fragment")]
    times = {r.line: r.time for r in result.readings}
    assert times[2] == 1671533231 and times[4] == 2780328


# -- fragments -------------------------------------------------------------------------------
def _codes(result: ParseResult) -> list[tuple[int, str]]:
    return sorted((e.line, e.code) for e in result.errors)


def test_two_fragments_in_order_give_one_static_reading() -> None:
    p1, p2 = _static()
    result = _parse(f"{p1}\n{p2}\n")
    [reading] = result.readings
    assert reading.type == "ais-static" and reading.line == 1 and not result.errors
    assert reading.subject == Reference("vessel", "9321483")
    v = reading.values
    assert (v["name"], v["callsign"], v["destination"], v["ship_type"]) == (
        "EVER GIVEN", "H3RC", "HKHKG", 70)
    assert v["dimensions"] == {"to_bow": 200, "to_stern": 200, "to_port": 30,
                               "to_starboard": 29, "length": 400, "beam": 59}
    assert v["draught"] == 14.5 and "flags" not in v


def test_fragments_out_of_order_never_make_a_wrong_message() -> None:
    p1, p2 = _static()
    # the pitfall: pyais assembles fragment 2 before fragment 1 into another message
    assert decode(p2, p1).asdict() != decode(p1, p2).asdict()
    result = _parse(f"{p2}\n{p1}\n")
    assert result.readings == []
    assert _codes(result) == [(1, "orphan-fragment"), (2, "incomplete-message")]
    assert result.stats["orphan_fragments"] == 1 and result.stats["expired_groups"] == 1


@pytest.mark.parametrize(("lines", "readings", "errors"), [
    # a reused sequence id: message A lost its fragment 2, B took id 3 next
    (["A1", "B1", "B2"], ["B"], [(1, "incomplete-message")]),
    # A's fragment 1 was lost: its fragment 2 must not join B's fragment 1 (same slot)
    (["A2", "B1", "B2"], ["B"], [(1, "orphan-fragment")]),
    (["A2", "B1", "B2", "A1"], ["B"], [(1, "orphan-fragment"), (4, "incomplete-message")]),
    # a fragment twice: the group starts over, the duplicate 2 is an orphan
    (["A1", "A2", "A2"], ["A"], [(3, "orphan-fragment")]),
    (["A1", "A1", "A2"], ["A"], [(1, "incomplete-message")]),
    # interleaved: other sequence id, other channel
    (["A1", "C1", "A2", "C2"], ["A", "C"], []),
    (["A1", "D1", "D2", "A2"], ["D", "A"], []),
])
def test_fragment_table(lines: list[str], readings: list[str],
                        errors: list[tuple[int, str]]) -> None:
    messages = {
        "A": _static(211000001, 9074729, seq_id=3),
        "B": _static(211000002, 9321483, seq_id=3, shipname="BRAVO"),
        "C": _static(211000003, 9134270, seq_id=4),
        "D": _static(211000004, 9266633, seq_id=3, channel="B"),
    }
    text = "\n".join(messages[token[0]][int(token[1]) - 1] for token in lines)
    result = _parse(text)
    assert [r.values["mmsi"] % 10 for r in result.readings] == [
        " ABCD".index(name) for name in readings]
    assert _codes(result) == sorted(errors)


def test_a_gap_in_a_three_fragment_message() -> None:
    payload = "8" + "0" * 150  # a long type 8 (counted, no reading)
    parts = [payload[:60], payload[60:120], payload[120:]]
    f = [_nmea(f"AIVDM,3,{n},5,A,{p},0") for n, p in enumerate(parts, start=1)]
    assert _codes(_parse("\n".join([f[0], f[2]]))) == [(1, "incomplete-message"),
                                                       (2, "orphan-fragment")]
    whole = _parse("\n".join(f))
    assert not whole.errors and whole.stats["unsupported_type"] == 1


def test_unfinished_groups_expire_by_lines() -> None:
    p1, p2 = _static()
    filler = [_position(230000000 + n) for n in range(ais.DecoderLimits().max_group_lines)]
    result = _parse("\n".join([p1, *filler, p2]))
    assert _codes(result) == [(1, "incomplete-message"), (22, "orphan-fragment")]
    assert result.stats["positions"] == len(filler)
    near = _parse("\n".join([p1, *filler[:-1], p2]))
    assert not near.errors and near.stats["statics"] == 1


def test_unfinished_groups_expire_by_time() -> None:
    p1, p2 = _static()
    late = _parse(_tagged(p1, receiver_timestamp=T0) + "\n"
                  + _tagged(p2, receiver_timestamp=T0 + 61))
    assert _codes(late) == [(1, "incomplete-message"), (2, "orphan-fragment")]
    soon = _parse(_tagged(p1, receiver_timestamp=T0) + "\n"
                  + _tagged(p2, receiver_timestamp=T0 + 60))
    [reading] = soon.readings
    assert reading.time == T0 and not soon.errors  # the first fragment's time


def test_a_stream_decoder_expires_groups_on_the_clock() -> None:
    p1, p2 = _static()
    decoder = ais.AisDecoder()
    decoder.feed(f"{p1}\n".encode(), received_at=T0)
    decoder.expire(T0 + 60)
    assert decoder.take().errors == []
    decoder.expire(T0 + 61)
    batch = decoder.take()
    assert _codes(batch) == [(1, "incomplete-message")] and batch.stats["expired_groups"] == 1
    decoder.feed(f"{p2}\n".encode(), received_at=T0 + 62)
    assert _codes(decoder.take()) == [(2, "orphan-fragment")]


def test_bytes_cut_anywhere_read_the_same() -> None:
    p1, p2 = _static()
    text = "\r\n".join([_position(), p1, p2, _position(230000001), "garbage", ""]).encode()
    whole = _parse(text)
    assert len(whole.readings) == 3
    for cut in range(1, len(text)):
        decoder = ais.AisDecoder()
        decoder.feed(text[:cut], received_at=T0)
        decoder.feed(text[cut:], received_at=T0)
        decoder.finish()
        part = decoder.take()
        assert part.readings == whole.readings
        assert [(r.line, r.values) for r in part.readings] == [
            (r.line, r.values) for r in whole.readings]
        assert part.errors == whole.errors


def test_line_endings_and_a_missing_final_newline() -> None:
    p1, p2 = _static()
    for sep in ("\n", "\r\n", "\r"):
        result = _parse(sep.join([_position(), p1, p2]))
        assert [r.line for r in result.readings] == [1, 2] and not result.errors


# -- times, checksums, rejections ------------------------------------------------------------
@pytest.mark.parametrize(("stamp", "expected", "invalid"), [
    ("1671533231", 1671533231, 0),
    ("1671533231123", 1671533231, 0),  # milliseconds
    ("1671533231.5", 1671533231, 0),
    ("99999999999", T0, 1),  # 11 digits: neither seconds nor milliseconds
    ("yesterday", T0, 1),
])
def test_tag_block_times(stamp: str, expected: int, invalid: int) -> None:
    result = _parse(_tagged(_position(), source_station="r003669945",
                            receiver_timestamp=stamp))
    [reading] = result.readings
    assert reading.time == expected and result.stats["tag_time_invalid"] == invalid


def test_tag_block_with_a_wrong_checksum_is_refused() -> None:
    line = _tagged(_position(), receiver_timestamp=1671533231)
    broken = line.replace("c:1671533231", "c:1671533232")
    result = _parse(broken)
    assert _codes(result) == [(1, "bad-checksum")] and result.readings == []


@pytest.mark.parametrize(("line", "code"), [
    (_position()[:-2] + "00", "bad-checksum"),
    (_position()[:-3], "bad-checksum"),  # no checksum at all
    ("!AIVDM,1,1,,B,,0*25", "empty-payload"),  # real (pyais's sample)
    (_nmea("AIVDM,1,1,,A,1771CB0P1s8:Cg0<ha`74U`1P0,0"), "bad-length"),  # 156 bits
    (_nmea("AIVDM,1,1,,A,1771CB0P1s8:Cg0<ha`74U`1P0~~,0"), "bad-sentence"),  # not armour
    (_nmea("AIVDM,1,3,,A,1771CB0P1s8:Cg0<ha`74U`1P000,0"), "bad-sentence"),  # fragment 3 of 1
    (_nmea("AIVDM,1,1"), "bad-sentence"),
    ("AIVDM,1,1,,A,1771CB0P1s8:Cg0<ha`74U`1P000,0*21", "not-nmea"),
    ("2026-03-31 23:33:20 hello", "not-nmea"),
    ("!" + "A" * 3000, "line-too-long"),
    (_nmea("PGHP,1,2008,13,9,0,0,0,10,338,2,,1,09", "$"), "bad-sentence"),  # month 13
])
def test_rejected_lines(line: str, code: str) -> None:
    result = _parse(f"{_position(211000009)}\n{line}\n{_position(211000010)}\n")
    assert _codes(result) == [(2, code)]
    assert [r.values["mmsi"] for r in result.readings] == [211000009, 211000010]
    assert result.stats["decoder_errors"] == 0


def test_text_after_the_checksum_is_a_receivers_and_is_ignored() -> None:
    result = _parse(_position() + ",b003660465")
    assert len(result.readings) == 1 and not result.errors


def test_comments_blank_lines_and_other_nmea_are_counted_not_refused() -> None:
    text = "\n".join(["# a log", "", "   ", "$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,"
                      "100.00,M,-33.9,M,,0000*6D", _position()])
    result = _parse(text)
    assert not result.errors and len(result.readings) == 1
    assert (result.stats["comments"], result.stats["other_sentences"]) == (1, 1)
    assert result.readings[0].line == 5


def test_unsupported_types_are_counted() -> None:
    base_station = "!AIVDM,1,1,,A,402R3FiuiAeRMo:lN@Hf<d7005H8,0*15"  # type 4, hand-made
    body = base_station[1:-3]
    result = _parse(_nmea(body))
    assert result.readings == [] and not result.errors
    assert result.stats["unsupported_type"] == 1


# -- positions --------------------------------------------------------------------------------
def test_position_values_and_not_available_fields() -> None:
    result = _parse("\n".join([
        _position(status=5),
        _position(msg_type=18, speed=102.3, course=360.0, heading=511),
        _position(msg_type=3, status=1, speed=0.0, course=0.0, heading=0),
    ]))
    a, b, c = (r.values for r in result.readings)
    assert a == {"mmsi": 477123400, "lat": 22.3, "lon": 114.1, "sog": 12.3, "cog": 181.0,
                 "heading": 180, "status": 5, "status_name": "moored", "msg_type": 1}
    assert (b["sog"], b["cog"], b["heading"], b["status"], b["status_name"]) == (
        None, None, None, None, None)
    assert (c["sog"], c["cog"], c["heading"], c["status_name"]) == (0.0, 0.0, 0, "at anchor")


def test_unavailable_and_impossible_positions_are_typed_rejections() -> None:
    result = _parse("\n".join([
        _position(lat=91.0, lon=181.0),
        _position(msg_type=18, lat=91.0, lon=20.0),
        _position(lat=-95.0, lon=20.0),
        _position(),
    ]))
    assert _codes(result) == [(1, "position-unavailable"), (2, "position-unavailable"),
                              (3, "position-out-of-range")]
    assert (result.stats["unavailable_position"], result.stats["bad_position"]) == (2, 1)
    assert len(result.readings) == 1


# -- joins ------------------------------------------------------------------------------------
def test_mmsi_to_imo_join_links_positions_after_the_static_data() -> None:
    p1, p2 = _static(477123400, 9321483)
    result = _parse("\n".join([_position(477123400), p1, p2, _position(477123400),
                               _position(477999999)]))
    before, static, after, other = result.readings
    assert before.subject is None and before.values["mmsi"] == 477123400
    assert static.subject == after.subject == Reference("vessel", "9321483")
    assert other.subject is None


def test_known_vessels_seed_the_join() -> None:
    decoder = ais.AisDecoder(vessels={477123400: "9321483"})
    decoder.feed((_position() + "\n").encode(), received_at=T0)
    [reading] = decoder.take().readings
    assert reading.subject == Reference("vessel", "9321483")
    assert decoder.known_vessels[477123400] == "9321483"


def test_bad_imo_check_digit_is_flagged_and_not_joined() -> None:
    p1, p2 = _static(477123400, 9321484)  # check digit is 3
    result = _parse("\n".join([p1, p2, _position(477123400)]))
    static, position = result.readings
    assert static.values["imo"] == "9321484"
    assert static.subject == Reference("vessel", "9321484")
    [flag] = static.values["flags"]
    assert (flag["field"], flag["code"], flag["value"]) == ("imo", "invalid-check-digit",
                                                            "9321484")
    assert position.subject is None and not result.errors


def test_imo_not_available_or_not_an_imo_number() -> None:
    zero = _parse("\n".join(_static(477123400, 0))).readings[0]
    assert zero.values["imo"] is None and zero.subject is None and "flags" not in zero.values
    odd = _parse("\n".join(_static(477123400, 12345))).readings[0]
    assert odd.values["imo"] is None and odd.subject is None
    assert odd.values["flags"][0]["code"] == "invalid-imo-number"


def test_type_24_parts_join_by_mmsi() -> None:
    part_a = encode_dict({"type": 24, "mmsi": 244030868, "partno": 0, "shipname": "HESTIA"},
                         sentence_type="VDM")[0]
    part_b = encode_dict({"type": 24, "mmsi": 244030868, "partno": 1, "callsign": "PC7308",
                          "ship_type": 36, "to_bow": 14, "to_stern": 1, "to_port": 1,
                          "to_starboard": 4}, sentence_type="VDM")[0]
    for order in ([part_a, part_b], [part_b, part_a]):
        first, second = (r.values for r in _parse("\n".join(order)).readings)
        assert second["name"] == "HESTIA" and second["callsign"] == "PC7308"
        assert second["ship_type"] == 36 and second["dimensions"]["length"] == 15
        assert {first["part"], second["part"]} == {"A", "B"}
    lonely = _parse(part_b).readings[0].values
    assert lonely["name"] is None and lonely["callsign"] == "PC7308"


# -- ETA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("parts", "at", "iso"), [
    ((11, 24, 8, 15), "2026-11-20T00:00:00Z", "2026-11-24T08:15:00Z"),
    ((1, 5, 12, 0), "2026-12-20T00:00:00Z", "2027-01-05T12:00:00Z"),  # over new year
    ((12, 30, 12, 0), "2027-01-03T00:00:00Z", "2026-12-30T12:00:00Z"),  # just passed
    ((3, 1, 0, 0), "2026-06-01T00:00:00Z", "2027-03-01T00:00:00Z"),  # long passed: next
    ((2, 29, 6, 0), "2026-06-01T00:00:00Z", "2028-02-29T06:00:00Z"),
    ((4, 31, 6, 0), "2026-01-01T00:00:00Z", None),  # no such date
    ((5, 15, 24, 60), "2026-01-01T00:00:00Z", None),  # hour and minute not available
])
def test_eta_year_guess(parts: tuple[int, int, int, int], at: str, iso: str | None) -> None:
    from gateway.events.model import parse_time

    result = ais.eta(*parts, parse_time(at))
    assert result is not None
    assert (result["month"], result["day"], result["hour"], result["minute"]) == parts
    assert result["iso"] == iso


def test_eta_not_available() -> None:
    assert ais.eta(0, 0, 24, 60, T0) is None


# -- the adapter's face -------------------------------------------------------------------------
def test_sniff_and_registry() -> None:
    for name in ("gpsd-sample.aivdm", "gpsd-ais-nmea.log", "pyais-gatehouse.nmea",
                 "pyais-spire-tag-blocks.nmea", "pyais-tag-groups.nmea"):
        assert ais.sniff(_read(name)), name
    for other in (b"UNB+UNOA:2+SENDER+RECEIVER+260331:2333+1'", b'{"eventType": "EQUIPMENT"}',
                  b"$GPGGA,184353.07,1929.045,S,02410.506,E,1,04,2.6,100.00,M,-33.9,M,,*6D",
                  b""):
        assert not ais.sniff(other)
        result = _parse(other)
        assert not result.recognised and result.errors[0].code == "wrong-format"
    assert formats.adapter("ais") is ais and ais.FORMAT == "ais"


def test_report_lines_round_trip_through_the_reading_json() -> None:
    p1, p2 = _static()
    result = _parse("\n".join([p1, p2, _position()]))
    lines = list(result.report())
    assert [line["kind"] for line in lines] == ["reading", "reading"]
    position = lines[1]
    assert {k: position[k] for k in ("type", "mmsi", "lat", "lon", "sog", "cog", "heading")} == {
        "type": "ais-position", "mmsi": 477123400, "lat": 22.3, "lon": 114.1, "sog": 12.3,
        "cog": 181.0, "heading": 180}
    assert position["subject"] == {"kind": "vessel", "value": "9321483"}
    assert lines[0]["imo"] == "9321483" and lines[0]["name"] == "EVER GIVEN"
    for line, reading in zip(lines, result.readings, strict=True):
        assert from_json(json.loads(json.dumps(line))) == reading
    assert result.summary()["readings"] == 2


def test_stats_have_every_key() -> None:
    assert set(_parse(_position()).stats) == set(ais.STAT_KEYS)


# -- fuzzing -----------------------------------------------------------------------------------
def _pool() -> list[bytes]:
    lines: list[bytes] = []
    for name in ("gpsd-sample.aivdm", "gpsd-ais-nmea.log", "pyais-nmea_data_sample.txt",
                 "pyais-mixed.txt", "pyais-gatehouse.nmea", "pyais-spire-tag-blocks.nmea",
                 "pyais-tag-groups.nmea"):
        lines.extend(line for line in _read(name).splitlines() if line[:1] in b"!$\\")
    return sorted(set(lines))


POOL = _pool()


def _fix_checksum(line: bytes) -> bytes:
    """The same line with its sentence checksum recomputed (mutations reach the decoder)."""
    start = max(line.rfind(b"!"), line.rfind(b"$"))
    star = line.rfind(b"*")
    if start < 0 or star <= start:
        return line
    return line[:star + 1] + b"%02X" % checksum(line[start + 1:star])


@st.composite
def mutated_logs(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=12))
    if draw(st.booleans()):
        lines = draw(st.permutations(lines))
    out = [bytearray(line) for line in lines]
    for _ in range(draw(st.integers(0, 8))):
        line = out[draw(st.integers(0, len(out) - 1))]
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "digit"]))
        at = draw(st.integers(0, max(len(line) - 1, 0)))
        if op == "flip" and line:
            line[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del line[at:]
        elif op == "insert":
            line[at:at] = draw(st.binary(min_size=1, max_size=4)
                               | st.sampled_from([b",", b"*", b"\\", b"!", b"\n", b"9"]))
        elif op == "delete" and line:
            del line[at]
        elif op == "digit" and line:
            line[at] = ord(draw(st.sampled_from("0123456789,*")))
    fixed = [_fix_checksum(bytes(line)) if draw(st.booleans()) else bytes(line) for line in out]
    return draw(st.sampled_from([b"\n", b"\r\n"])).join(fixed)


def _check_result(data: bytes, result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    assert result.stats.get("decoder_errors", 0) == 0
    lines = max(len(data.splitlines()), 1)
    for error in result.errors:
        assert error.code in CODES, error
        assert 0 <= error.line <= lines and error.message
    for reading in result.readings:
        json.dumps(reading.to_json())
        if reading.type == "ais-position":
            assert -90 <= reading.values["lat"] <= 90 and -180 <= reading.values["lon"] <= 180
        assert 1 <= reading.line <= lines


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_logs())
def test_fuzz_mutated_real_sentences(data: bytes) -> None:
    _check_result(data, ais.parse(data, received_at=T0))


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_logs())
def test_fuzz_mutated_real_sentences_long(data: bytes) -> None:
    _check_result(data, ais.parse(data, received_at=T0))


@settings(max_examples=100, deadline=None)
@given(mutated_logs(), st.lists(st.integers(0, 2000), max_size=6))
def test_fuzz_chunked_feeding_reads_the_same(data: bytes, cuts: list[int]) -> None:
    whole = ais.parse(data, received_at=T0)
    if not whole.recognised:
        return
    decoder = ais.AisDecoder()
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        decoder.feed(data[previous:cut], received_at=T0)
        previous = cut
    decoder.feed(data[previous:], received_at=T0)
    decoder.finish()
    part = decoder.take()
    assert part.readings == whole.readings and part.errors == whole.errors


def test_fuzz_whole_real_files_shuffled() -> None:
    rng = random.Random(12)
    for name in ("gpsd-sample.aivdm", "gpsd-ais-nmea.log", "pyais-nmea_data_sample.txt"):
        lines = _read(name).splitlines()
        for _ in range(3):
            rng.shuffle(lines)
            data = b"\n".join(lines)
            _check_result(data, ais.parse(data, received_at=T0))


# -- a stream decoder's edges -------------------------------------------------------------------
def test_a_too_long_line_across_chunks_is_refused_once_and_skipped() -> None:
    decoder = ais.AisDecoder(limits=ais.DecoderLimits(max_line_bytes=100))
    decoder.feed(b"!AIVDM," + b"x" * 60, received_at=T0)
    decoder.feed(b"y" * 60, received_at=T0)  # now over the limit: refused, not buffered
    decoder.feed(b"z" * 5000, received_at=T0)
    decoder.feed(b"zz\n" + _position().encode() + b"\n", received_at=T0)
    decoder.finish()
    result = decoder.take()
    assert _codes(result) == [(1, "line-too-long")]
    assert [r.line for r in result.readings] == [2]


def test_datagram_ends_and_lost_connections() -> None:
    decoder = ais.AisDecoder()
    decoder.feed(_position().encode(), received_at=T0)
    assert decoder.take().readings == []  # the line may go on
    decoder.end_line(received_at=T0)
    assert len(decoder.take().readings) == 1
    decoder.feed(_position().encode()[:20], received_at=T0)
    decoder.discard_partial()  # the connection closed mid-line
    decoder.feed(_position(211000011).encode() + b"\n", received_at=T0)
    result = decoder.take()
    assert [r.values["mmsi"] for r in result.readings] == [211000011] and not result.errors
    assert decoder.pending_sentences == 0


# -- the SIMULATED writer (devnet/simfeeds/ais.py) read back ------------------------------------
def test_simulated_voyage_round_trip() -> None:
    from devnet.simfeeds.ais import SimVessel, track, write_track

    vessel = SimVessel(477123400, "9321483", "PACIFIC CONCORD", "VRAB3", "HKHKG")
    fixes = track((22.15, 114.35), (22.30, 114.15), start_time=T0, speed_knots=12.0,
                  interval=60)
    eta = fixes[-1].time
    text = write_track(vessel, fixes, eta=eta, static_every=6)
    result = _parse(text, received_at=1)
    assert not result.errors and result.stats["decoder_errors"] == 0
    positions = [r for r in result.readings if r.type == "ais-position"]
    statics = [r for r in result.readings if r.type == "ais-static"]
    assert len(positions) == len(fixes) and len(statics) == (len(fixes) + 5) // 6
    for reading, fix in zip(positions, fixes, strict=True):
        assert reading.subject == Reference("vessel", "9321483")  # type 5 came first
        assert reading.time == fix.time  # from the tag blocks
        v = reading.values
        assert v["lat"] == pytest.approx(fix.lat, abs=2e-6)
        assert v["lon"] == pytest.approx(fix.lon, abs=2e-6)
        assert (v["sog"], v["cog"], v["heading"], v["status"]) == (
            pytest.approx(fix.sog), pytest.approx(fix.cog), fix.heading, fix.status)
    assert positions[-1].values["status_name"] == "moored"
    first = statics[0].values
    assert (first["imo"], first["name"], first["callsign"], first["destination"]) == (
        "9321483", "PACIFIC CONCORD", "VRAB3", "HKHKG")
    assert first["eta"]["iso"] == time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(eta))
    assert first["draught"] == 13.5 and first["dimensions"]["length"] == 366
    # sequence ids wrap 0..9 and never join the wrong fragments
    assert len(statics) > 10
    bare = _parse(write_track(vessel, fixes[:3], eta=eta, tag_blocks=False))
    assert [r.time for r in bare.readings] == [T0] * 4 and "\\" not in write_track(
        vessel, fixes[:3], eta=eta, tag_blocks=False)


def test_simulated_vessel_data_is_checked() -> None:
    from devnet.simfeeds.ais import SimVessel, track

    with pytest.raises(ValueError):
        SimVessel(477123400, "932148", "X", "Y", "HKHKG")
    with pytest.raises(ValueError):
        SimVessel(477123400, "9321483", "a name far too long for ais", "Y", "HKHKG")
    with pytest.raises(ValueError):
        track((0, 0), (1, 1), start_time=T0, speed_knots=0, interval=60)


def test_a_wrapper_time_before_1970_is_not_used() -> None:
    wrapper = _nmea("PGHP,1,1969,12,31,23,0,0,0,338,2,,1,09", "$")
    result = _parse(f"{wrapper}\n{_position()}\n")
    assert [r.time for r in result.readings] == [T0] and not result.errors
    assert result.stats["tag_time_invalid"] == 1
