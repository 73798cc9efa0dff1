"""Encoders: raw input -> the `int64[]` samples the contracts take.

The trainer stores a well-known encoder name (`CollaborativeTrainer.encoder`) so that every client
turns raw input into the same integers:

* "none": the input already is a list of integers (sparse indices, or fixed-point values).
* "multiply by 1e9 then round": real values to fixed point, rounding half up like JavaScript's
  `Math.round`, which the reference's clients used.
* "murmurhash3": MurmurHash3 (x86, 32-bit, unsigned) of each lowercase whitespace token, as sparse
  feature indices, optionally reduced modulo a feature count.
* "vocabulary": each lowercase whitespace token's index in a given vocabulary.
* "unit norm": dense real vectors scaled to unit L2 norm and to fixed point, adjusted so the sum of
  squares lies within the dense contracts' tolerance (|sum d_i^2 - 1e18| < 1e11).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

FIXED_POINT = 10**9
ONE_SQUARED = 10**18
NORM_TOLERANCE = 10**11  # the dense contracts revert outside it
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ENCODER_NONE = "none"
ENCODER_MULTIPLY = "multiply by 1e9 then round"
ENCODER_MURMURHASH3 = "murmurhash3"
ENCODER_VOCABULARY = "vocabulary"
ENCODER_UNIT_NORM = "unit norm"
ENCODERS = (ENCODER_NONE, ENCODER_MULTIPLY, ENCODER_MURMURHASH3, ENCODER_VOCABULARY, ENCODER_UNIT_NORM)

_M32 = 0xFFFFFFFF


class EncodingError(ValueError):
    pass


def _int64(values: Iterable[int], what: str) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            raise EncodingError(f"{what}[{i}] = {v!r} is not an integer")
        if not INT64_MIN <= v <= INT64_MAX:
            raise EncodingError(f"{what}[{i}] = {v} does not fit in int64")
        out.append(v)
    return out


def encode_none(values: Iterable[int]) -> list[int]:
    """The identity, checked: integers that fit in int64."""
    return _int64(values, "value")


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def multiply_by_1e9(values: Iterable[float]) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise EncodingError(f"value[{i}] = {v!r} is not finite")
        out.append(round_half_up(v * FIXED_POINT))
    return _int64(out, "value x 1e9")


# ---- MurmurHash3 ---------------------------------------------------------------------------------


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def murmurhash3_32(data: bytes | str, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit (Austin Appleby's reference algorithm), as an unsigned integer."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _M32
    n = len(data)
    end = n - n % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = _rotl32((k * c1) & _M32, 15)
        h ^= (k * c2) & _M32
        h = (_rotl32(h, 13) * 5 + 0xE6546B64) & _M32
    tail = data[end:]
    k = 0
    if len(tail) == 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if tail:
        k ^= tail[0]
        h ^= (_rotl32((k * c1) & _M32, 15) * c2) & _M32
    h ^= n
    # fmix32: every input bit affects every output bit
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def tokens(text: str) -> list[str]:
    """Lowercase whitespace tokens."""
    return text.lower().split()


def _finish(indices: list[int], unique: bool) -> list[int]:
    # Sparse nearest centroid needs sorted distinct indices; naive Bayes counts repeats.
    return sorted(set(indices)) if unique else indices


def murmurhash3_indices(text: str, n_features: int | None = None, *, seed: int = 0, unique: bool = False
                        ) -> list[int]:
    """Sparse indices of a text: the hash of each token, modulo `n_features` when given."""
    if n_features is not None and n_features <= 0:
        raise EncodingError(f"n_features = {n_features} must be positive")
    hashes = [murmurhash3_32(t, seed) for t in tokens(text)]
    if n_features is not None:
        hashes = [h % n_features for h in hashes]
    return _finish(hashes, unique)


def vocabulary_indices(text: str, vocabulary: Mapping[str, int], *, unknown: Literal["skip", "error"] = "skip",
                       unique: bool = False) -> list[int]:
    """Sparse indices of a text: each token's index in `vocabulary` (unknown tokens skipped or an error)."""
    out = []
    for t in tokens(text):
        idx = vocabulary.get(t)
        if idx is None:
            if unknown == "error":
                raise EncodingError(f"token {t!r} is not in the vocabulary")
            continue
        out.append(idx)
    return _finish(_int64(out, "vocabulary index"), unique)


def build_vocabulary(texts: Iterable[str], max_size: int | None = None) -> dict[str, int]:
    """Token -> index, most frequent first (ties by first appearance)."""
    counts: dict[str, int] = {}
    for text in texts:
        for t in tokens(text):
            counts[t] = counts.get(t, 0) + 1
    ranked = sorted(counts, key=lambda t: -counts[t])
    return {t: i for i, t in enumerate(ranked[:max_size])}


# ---- dense unit norm -----------------------------------------------------------------------------


def unit_norm(values: Sequence[float]) -> list[int]:
    """x / |x|, x1e9, rounded, then nudged until |sum d_i^2 - 1e18| < 1e11 (the contracts' check).

    Rounding moves the sum of squares by at most about sum |d_i| <= sqrt(n) * 1e9, which only long
    vectors push past the tolerance; then the largest component absorbs the difference."""
    if not values:
        raise EncodingError("cannot scale an empty vector to unit norm")
    if not all(math.isfinite(v) for v in values):
        raise EncodingError("the vector has a non-finite value")
    norm = math.sqrt(math.fsum(v * v for v in values))
    if norm == 0:
        raise EncodingError("cannot scale the zero vector to unit norm")
    d = [round_half_up(v / norm * FIXED_POINT) for v in values]
    for _ in range(8):
        off = sum(v * v for v in d) - ONE_SQUARED
        if abs(off) < NORM_TOLERANCE:
            return d
        i = max(range(len(d)), key=lambda j: abs(d[j]))
        big = d[i]
        # (big + delta)^2 - big^2 ~ 2 * big * delta = -off
        delta = round_half_up(-off / (2 * big)) if big else 1
        d[i] = big + delta
    raise EncodingError("could not reach unit norm within the tolerance")


def is_unit_norm(values: Sequence[int]) -> bool:
    return abs(sum(int(v) * int(v) for v in values) - ONE_SQUARED) < NORM_TOLERANCE


def encode(name: str, raw: Any, **options: Any) -> list[int]:
    """Encode `raw` with the encoder called `name` (one of ENCODERS); options go to that encoder."""
    if name == ENCODER_NONE:
        return encode_none(raw)
    if name == ENCODER_MULTIPLY:
        return multiply_by_1e9(raw)
    if name == ENCODER_MURMURHASH3:
        return murmurhash3_indices(raw, **options)
    if name == ENCODER_VOCABULARY:
        return vocabulary_indices(raw, **options)
    if name == ENCODER_UNIT_NORM:
        return unit_norm(raw)
    raise EncodingError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
