"""Encoders: MurmurHash3 against published vectors and scikit-learn's implementation, tokenising,
vocabulary lookup, fixed point and unit-norm scaling within the dense contracts' tolerance."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.encoders import (
    ENCODER_MULTIPLY,
    ENCODER_MURMURHASH3,
    ENCODER_NONE,
    ENCODER_UNIT_NORM,
    ENCODER_VOCABULARY,
    NORM_TOLERANCE,
    EncodingError,
    build_vocabulary,
    encode,
    is_unit_norm,
    multiply_by_1e9,
    murmurhash3_32,
    murmurhash3_indices,
    tokens,
    unit_norm,
    vocabulary_indices,
)

# Published MurmurHash3_x86_32 test vectors (input, seed, hash).
VECTORS = [
    (b"", 0, 0),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    (b"abc", 0, 0xB3DD93FA),
    (b"hello", 0, 0x248BFA47),
]


@pytest.mark.parametrize(("data", "seed", "expected"), VECTORS)
def test_murmurhash3_known_vectors(data, seed, expected):
    assert murmurhash3_32(data, seed) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.integers(0, 2**32 - 1))
def test_murmurhash3_agrees_with_scikit_learn(text, seed):
    from sklearn.utils import murmurhash3_32 as sk_murmur

    assert murmurhash3_32(text, seed) == sk_murmur(text.encode("utf-8"), seed=seed, positive=True)


def test_text_to_hashed_indices():
    text = "Great  movie\tGREAT acting"
    assert tokens(text) == ["great", "movie", "great", "acting"]
    raw = murmurhash3_indices(text)
    assert raw == [murmurhash3_32(t) for t in ("great", "movie", "great", "acting")]
    assert all(0 <= h < 2**32 for h in raw)
    assert murmurhash3_indices(text, 1000) == [h % 1000 for h in raw]
    assert murmurhash3_indices(text, 1000, unique=True) == sorted({h % 1000 for h in raw})
    assert encode(ENCODER_MURMURHASH3, text, n_features=1000) == [h % 1000 for h in raw]
    with pytest.raises(EncodingError):
        murmurhash3_indices(text, 0)


def test_vocabulary_lookup():
    vocab = build_vocabulary(["the cat", "the dog", "The end"])
    assert vocab["the"] == 0 and set(vocab) == {"the", "cat", "dog", "end"}
    assert vocabulary_indices("The cat sat", vocab) == [0, vocab["cat"]]
    assert vocabulary_indices("cat the cat", vocab, unique=True) == sorted({0, vocab["cat"]})
    with pytest.raises(EncodingError, match="'sat'"):
        vocabulary_indices("The cat sat", vocab, unknown="error")
    assert encode(ENCODER_VOCABULARY, "dog", vocabulary=vocab) == [vocab["dog"]]


def test_fixed_point_and_none():
    assert multiply_by_1e9([0.5, -0.25, 1e-9, 2.5e-9, -2.5e-9]) == [500_000_000, -250_000_000, 1, 3, -2]
    assert encode(ENCODER_MULTIPLY, [1.0]) == [10**9]
    assert encode(ENCODER_NONE, [1, -2]) == [1, -2]
    with pytest.raises(EncodingError, match="int64"):
        encode(ENCODER_NONE, [2**63])
    with pytest.raises(EncodingError):
        multiply_by_1e9([math.inf])
    with pytest.raises(EncodingError, match="unknown encoder"):
        encode("rot13", "x")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=300).filter(
    lambda v: math.sqrt(math.fsum(x * x for x in v)) > 1e-6))
def test_unit_norm_within_contract_tolerance(values):
    d = unit_norm(values)
    assert len(d) == len(values)
    assert abs(sum(x * x for x in d) - 10**18) < NORM_TOLERANCE
    assert is_unit_norm(d)
    # direction kept: every component within a rounding (plus the one adjusted) of the ideal
    norm = math.sqrt(math.fsum(x * x for x in values))
    off = sorted(abs(di - v / norm * 1e9) for di, v in zip(d, values))
    assert all(o <= 1 for o in off[:-1])


def test_unit_norm_long_vectors_need_the_adjustment():
    values = [1.0 + (i % 7) * 1e-3 for i in range(200_000)]
    d = encode(ENCODER_UNIT_NORM, values)
    assert is_unit_norm(d)
    with pytest.raises(EncodingError):
        unit_norm([0.0, 0.0])
    with pytest.raises(EncodingError):
        unit_norm([])
