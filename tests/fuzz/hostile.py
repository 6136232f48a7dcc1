"""Hypothesis strategies for hostile payloads: JSON-ish bytes that no valid device sends.

Tokens JSON does not allow (bare NaN, Infinity), numbers past a double and an int64, strings that look
like numbers and times but are not, nesting past any parser's depth limit, lists of thousands of items,
wrong encodings; and every mutation of ``bench/_faults_hostile.py`` (the broker run's generator) applied
to the valid payloads `tests.strategies` encodes for each vendor.
"""

from __future__ import annotations

import json
import random

from hypothesis import strategies as st

from bench._faults_hostile import HUGE, MUTATIONS, NAN_INF, SWAPS
from tests.strategies import (
    VENDOR_KEYS,
    acme_messages,
    encode_acme,
    encode_rainco,
    encode_senml,
    encode_trafix,
    hydrox_readings,
    json_documents,
    rainco_readings,
    trafix_records,
)

_WEIRD_STRINGS = tuple(
    json.dumps(s).encode()
    for s in (
        "NaN", "nan", "inf", "-Infinity", "1e999", "", " ", "\u0000", "\ud800", "0x1F", "1_000",
        "9999-99-99T99:99:99", "2026-13-01 00:00:00", "2026-02-30T00:00:00+08:00", "0000-00-00",
        "2026-11-22T08:00:00+99:00", "2026-11-22 08:00:00 Asia/Nowhere", "-1", "1e308", "12,5",
        "wl-00001:", ":", "wl-00001:water_level:x", "a" * 300, "\u202e\u0000\uffff",
    )
)  # fmt: skip

scalars: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(HUGE + NAN_INF + SWAPS + _WEIRD_STRINGS),
    st.integers().map(lambda i: str(i).encode()),
    st.floats().map(lambda f: repr(f).encode()),  # nan, inf: not JSON
    st.text(max_size=8).map(lambda s: json.dumps(s).encode()),
    st.just(b"-"),
    st.just(b"1e"),
)

_KEYS = st.sampled_from(VENDOR_KEYS) | st.text(max_size=4)


def _containers(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(children, max_size=6).map(lambda xs: b"[" + b",".join(xs) + b"]") | st.lists(
        st.tuples(_KEYS.map(lambda k: json.dumps(k).encode()), children), max_size=6
    ).map(lambda kvs: b"{" + b",".join(k + b":" + v for k, v in kvs) + b"}")


jsonish: st.SearchStrategy[bytes] = st.recursive(scalars, _containers, max_leaves=25)
"""Documents shaped like JSON whose leaves are hostile tokens."""


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """A value inside 100 to 100,000 arrays or objects, alone or inside a vendor's shape."""
    depth = draw(st.sampled_from([100, 1000, 5000, 100_000]))
    inner = draw(
        st.sampled_from(
            [b"[" * depth + b"1" + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth]
        )
    )
    return draw(
        st.sampled_from(
            [
                inner,
                b'[{"bn":"wl-00001:","n":"battery","v":' + inner + b"}]",
                b'{"ts":1763798400000,"bat":' + inner + b"}",
                b'{"gw":"tgw-001","data":' + inner + b"}",
                b'{"dev":"rr-00001","readings":[' + inner + b"]}",
            ]
        )
    )


@st.composite
def giant(draw: st.DrawFn) -> bytes:
    """A record list of thousands of items, of one vendor's shape or of junk."""
    n = draw(st.integers(1000, 20_000))
    item = draw(
        st.sampled_from(
            [
                b'{"n":"battery","v":1}',
                b'{"id":"tf-00001","t":"2026-11-22 08:00:00","flow":1}',
                b'{"ts":1763798400,"r":0.5}',
                b"null",
                b"[]",
            ]
        )
    )
    body = b",".join([item] * n)
    return draw(
        st.sampled_from(
            [
                b"[" + body + b"]",
                b'{"gw":"tgw-001","data":[' + body + b"]}",
                b'{"dev":"rr-00001","readings":[' + body + b"]}",
            ]
        )
    )


def _encoded(obj: object) -> bytes:
    return json.dumps(obj).encode()


valid_payloads: st.SearchStrategy[bytes] = st.one_of(
    hydrox_readings().map(encode_senml),
    acme_messages().map(lambda m: encode_acme(*m)),
    trafix_records().map(encode_trafix),
    rainco_readings().map(encode_rainco),
)
"""What each vendor's devices send (see `tests.strategies`)."""


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid vendor payload with one to three of the broker run's mutations applied."""
    payload = draw(valid_payloads)
    rng = random.Random(draw(st.integers(0, 2**32)))
    for name in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3)):
        payload = MUTATIONS[name](rng, payload)
    return payload


hostile_payloads: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=300),
    jsonish,
    json_documents.map(_encoded),
    mutated(),
    deep(),
    giant(),
    jsonish.map(lambda b: b.decode("utf-8", "replace").encode("utf-16")),
)
"""Anything a broken or hostile device might publish."""
