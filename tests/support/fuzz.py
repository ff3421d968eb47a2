"""Mutations of real sample files for the parsers' Hypothesis fuzzing (one strategy, each
format its own tokens and kinds of mutation)."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

#: Every kind of mutation :func:`mutated` knows.
KINDS = ("flip", "truncate", "insert", "shuffle", "duplicate", "delete", "splice", "latin1")


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes],
            kinds: Sequence[str] = KINDS) -> bytes:
    """A seed with 1 to 4 mutations among ``kinds``: byte flips, truncation, insertion of random
    bytes or of the format's ``tokens``, line shuffles, duplicates and deletions, a splice of
    another seed's tail, a UTF-8 → Latin-1 re-encoding."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(list(kinds)))
        if kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.one_of(st.binary(max_size=12), st.sampled_from(list(tokens))))
        elif kind == "latin1":
            data = bytearray(bytes(data).decode("utf-8", "replace").encode("latin-1", "replace"))
        elif kind == "splice":
            other = draw(st.sampled_from(list(seeds)))
            data += other[draw(st.integers(0, len(other))):]
        elif kind in ("shuffle", "duplicate", "delete"):
            lines = bytes(data).split(b"\n")
            if kind == "shuffle":
                lines = draw(st.permutations(lines))
            elif kind == "duplicate":
                at = draw(st.integers(0, len(lines) - 1))
                lines.insert(at, lines[at])
            elif len(lines) > 1:
                del lines[draw(st.integers(0, len(lines) - 1))]
            data = bytearray(b"\n".join(lines))
    return bytes(data)
