"""Reference numbers: ISO 6346, IMO, air waybill, UN/LOCODE, document references, detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.events import identifiers
from gateway.events.identifiers import (
    IdentifierError,
    awb_check_digit,
    carrier_of,
    container_check_digit,
    detect,
    imo_check_digit,
    normalise,
)
from gateway.events.model import REFERENCE_KINDS

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# -- ISO 6346 ----------------------------------------------------------------------------------
def test_letter_values_skip_multiples_of_eleven():
    values = identifiers._LETTER_VALUES
    assert values["A"] == 10 and values["B"] == 12 and values["K"] == 21
    assert values["L"] == 23 and values["U"] == 32 and values["V"] == 34 and values["Z"] == 38
    assert not any(v % 11 == 0 for v in values.values())


def _iso_sum(chars: str) -> int:
    """ISO 6346 weighted sum, written out independently of the module."""
    table = dict(zip(UPPER, [10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27,
                             28, 29, 30, 31, 32, 34, 35, 36, 37, 38], strict=True))
    return sum((table[c] if c.isalpha() else int(c)) * 2**i for i, c in enumerate(chars))


@pytest.mark.parametrize(
    ("first_ten", "digit"),
    [("CSQU305438", 3), ("MSKU907032", 3), ("HLXU123456", _iso_sum("HLXU123456") % 11 % 10)],
)
def test_container_check_digit(first_ten, digit):
    assert container_check_digit(first_ten) == digit


def test_remainder_ten_is_written_zero():
    # find a serial whose remainder is 10 and check that 0 is its valid check digit
    for serial in range(1000):
        first_ten = f"ABCU{serial:06d}"
        total = sum(
            (identifiers._LETTER_VALUES[c] if c.isalpha() else int(c)) * 2**i
            for i, c in enumerate(first_ten)
        )
        if total % 11 == 10:
            assert normalise("container", first_ten + "0") == first_ten + "0"
            break
    else:
        pytest.fail("no serial with remainder 10 in the first thousand")


@pytest.mark.parametrize("typed", ["CSQU3054383", "csqu 305438 3", "CSQU-305438-3", " CSQU305438/3 "])
def test_container_normal_form(typed):
    assert normalise("container", typed) == "CSQU3054383"


def test_wrong_check_digit_names_the_right_one():
    with pytest.raises(IdentifierError) as caught:
        normalise("container", "CSQU3054384")
    assert caught.value.code == "invalid-check-digit"
    assert caught.value.expected == "3"
    assert "check digit is 3, not 4" in str(caught.value)


def test_missing_check_digit_is_explained():
    with pytest.raises(IdentifierError) as caught:
        normalise("container", "CSQU305438")
    assert caught.value.code == "invalid-container-number"
    assert "would be 3" in str(caught.value)


@pytest.mark.parametrize("bad", ["CSQX3054383", "CS1U3054383", "CSQU30543", "", "CSQU30543833"])
def test_malformed_container_numbers(bad):
    with pytest.raises(IdentifierError) as caught:
        normalise("container", bad)
    assert caught.value.code == "invalid-container-number"


owner = st.text(UPPER, min_size=3, max_size=3)
category = st.sampled_from("UJZ")
serial = st.text("0123456789", min_size=6, max_size=6)


@given(owner, category, serial)
def test_generated_container_number_validates(o, c, s):
    number = f"{o}{c}{s}{container_check_digit(o + c + s)}"
    assert normalise("container", number) == number
    assert detect(number)[0].kind == "container" and detect(number)[0].valid


@given(owner, category, serial, st.integers(0, 10), st.integers(1, 25))
def test_single_character_changes(o, c, s, position, shift):
    number = f"{o}{c}{s}{container_check_digit(o + c + s)}"
    if position == 3:
        return  # the category letter is checked by its shape (U, J or Z)
    alphabet = UPPER if position < 3 else "0123456789"
    chars = list(number)
    chars[position] = alphabet[(alphabet.index(chars[position]) + shift) % len(alphabet)]
    changed = "".join(chars)
    if changed == number:
        return
    old, new = _iso_sum(number[:10]) % 11, _iso_sum(changed[:10]) % 11
    if position == 10:
        escapes = False  # a changed check digit never matches
    elif position >= 4:
        # a digit moves the sum by d * 2**i with 0 < |d| < 11: the remainder always changes,
        # and only the pair of remainders 0 and 10 (both written 0) lets it through
        assert old != new
        escapes = {old, new} == {0, 10}
    else:
        # owner-code letters whose values differ by 11 or 22 (A/K, B/L, ...) are a known
        # blind spot of ISO 6346; everything else is caught like a digit
        escapes = old == new or {old, new} == {0, 10}
    if escapes:
        assert normalise("container", changed) == changed
    else:
        with pytest.raises(IdentifierError) as caught:
            normalise("container", changed)
        assert caught.value.code == "invalid-check-digit"


@given(category, serial, st.integers(4, 9), st.integers(1, 9))
def test_single_digit_change_caught_unless_remainder_ten(c, s, position, shift):
    first_ten = f"ABC{c}{s}"
    number = first_ten + str(container_check_digit(first_ten))
    chars = list(number)
    chars[position] = str((int(chars[position]) + shift) % 10)
    changed = "".join(chars)
    remainders = {_iso_sum(number[:10]) % 11, _iso_sum(changed[:10]) % 11}
    if remainders != {0, 10}:
        with pytest.raises(IdentifierError):
            normalise("container", changed)


# -- IMO -------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", ["9074729", "IMO 9074729", "imo9074729", "IMO-9074729"])
def test_imo_forms(typed):
    assert normalise("vessel", typed) == "9074729"


def test_imo_check_digit_weights():
    # 9*7 + 0*6 + 7*5 + 4*4 + 7*3 + 2*2 = 139
    assert imo_check_digit("907472") == 9
    with pytest.raises(IdentifierError) as caught:
        normalise("vessel", "IMO 9074728")
    assert caught.value.code == "invalid-check-digit" and caught.value.expected == "9"


@pytest.mark.parametrize("bad", ["907472", "90747299", "IMO", "IMX9074729"])
def test_malformed_imo(bad):
    with pytest.raises(IdentifierError) as caught:
        normalise("vessel", bad)
    assert caught.value.code == "invalid-imo-number"


@given(st.text("0123456789", min_size=6, max_size=6), st.integers(0, 5), st.integers(1, 9))
def test_imo_single_digit_change_caught(first_six, position, shift):
    number = first_six + str(imo_check_digit(first_six))
    assert normalise("vessel", number) == number
    chars = list(number)
    chars[position] = str((int(chars[position]) + shift) % 10)
    changed = "".join(chars)
    # weights 7..2 are all coprime to 10 except 6, 5, 4 and 2: a change of 5 under weight
    # 2, 4 or 6, or an even change under weight 5, escapes; the test states exactly that.
    weight = 7 - position
    escapes = (weight * shift) % 10 == 0
    if escapes:
        assert normalise("vessel", changed) == changed
    else:
        with pytest.raises(IdentifierError):
            normalise("vessel", changed)


# -- air waybill -----------------------------------------------------------------------------
@pytest.mark.parametrize("typed", ["176-12345675", "17612345675", "176 1234 5675"])
def test_awb_forms(typed):
    assert normalise("awb", typed) == "17612345675"


def test_awb_check_digit():
    assert awb_check_digit("1234567") == 1234567 % 7 == 5
    with pytest.raises(IdentifierError) as caught:
        normalise("awb", "176-12345674")
    assert caught.value.code == "invalid-check-digit" and caught.value.expected == "5"
    with pytest.raises(IdentifierError) as caught:
        normalise("awb", "176-1234567")
    assert caught.value.code == "invalid-air-waybill"


@given(st.text("0123456789", min_size=3, max_size=3), st.integers(0, 9_999_999))
def test_generated_awb_validates(prefix, serial):
    seven = f"{serial:07d}"
    number = f"{prefix}{seven}{awb_check_digit(seven)}"
    assert normalise("awb", f"{prefix}-{number[3:]}") == number
    wrong = (awb_check_digit(seven) + 1) % 7
    with pytest.raises(IdentifierError):
        normalise("awb", f"{prefix}{seven}{wrong}")


# -- UN/LOCODE and document references -------------------------------------------------------
def test_unlocode():
    assert normalise("unlocode", "hk hkg") == "HKHKG"
    assert normalise("unlocode", "USNYC") == "USNYC"
    assert normalise("unlocode", "DEHA2") == "DEHA2"
    for bad in ("HKHK", "HKHKG1", "H1HKG", "HKHK0", "HKHK1"):
        with pytest.raises(IdentifierError) as caught:
            normalise("unlocode", bad)
        assert caught.value.code == "invalid-unlocode"


def test_document_references():
    assert normalise("mbl", "pcol-123 4567") == "PCOL1234567"
    assert normalise("booking", "MAEU/234.567") == "MAEU234567"
    assert normalise("hbl", "A" * 20) == "A" * 20
    with pytest.raises(IdentifierError, match="at most 20"):
        normalise("mbl", "A" * 21)
    with pytest.raises(IdentifierError, match="letters and digits"):
        normalise("hbl", "<script>")
    with pytest.raises(IdentifierError):
        normalise("mbl", " - ")
    assert normalise("declaration", "d" * 35) == "D" * 35
    with pytest.raises(IdentifierError):
        normalise("declaration", "D" * 36)
    with pytest.raises(IdentifierError, match="unknown reference kind"):
        normalise("passport", "X1")


def test_normalise_covers_every_event_reference_kind():
    assert set(REFERENCE_KINDS) | {"unlocode"} == set(identifiers.KINDS)


# -- carriers and detection ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reference", "scac", "name"),
    [
        ("MAEU123456789", "MAEU", "Maersk"),
        ("MSKU9070323", "MAEU", "Maersk"),
        ("MEDU1234567", "MSCU", "MSC"),
        ("hlcu-ham-123", "HLCU", "Hapag-Lloyd"),
        ("PCOL1234567", "PCOL", "Pacific Ocean Line"),
        ("ONEYHKGA12345", "ONEY", "Ocean Network Express"),
        ("SMLM1234", "SMLM", "SM Line"),
    ],
)
def test_carrier_of(reference, scac, name):
    carrier = carrier_of(reference)
    assert carrier is not None and (carrier.scac, carrier.name) == (scac, name)


def test_unknown_prefix_has_no_carrier():
    assert carrier_of("XXXX1234") is None
    assert carrier_of("") is None


def test_detect_ranking():
    kinds = [c.kind for c in detect("csqu 305438-3")]
    assert kinds[0] == "container"
    first = detect("CSQU3054384")[0]
    assert first.kind == "container" and not first.valid and "check digit is 3" in first.note
    assert detect("176-12345675")[0].kind == "awb"
    assert detect("IMO 9074729")[0] == identifiers.Candidate(
        "vessel", "9074729", None, note="IMO ship number"
    )
    pcol = detect("PCOL1234567")
    assert [c.kind for c in pcol[:2]] == ["mbl", "booking"]
    assert pcol[0].carrier == "Pacific Ocean Line"
    generic = [c.kind for c in detect("HF-88812")]
    assert generic == ["mbl", "hbl", "booking", "declaration", "shipment"]
    long = [c.kind for c in detect("X" * 30)]
    assert long == ["declaration", "shipment"]
    assert detect("") == [] and detect("<b>") == [] and detect("X" * 36) == []


@given(st.text(max_size=40))
def test_detect_never_raises_and_never_repeats_a_kind(text):
    found = detect(text)
    assert len({c.kind for c in found}) == len(found)
    for c in found:
        if c.valid:
            assert normalise(c.kind, c.value) == c.value
