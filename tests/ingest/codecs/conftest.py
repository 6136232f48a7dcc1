"""Fixtures for codec tests: a real registry (SQLite file) with the shipped profiles, and a runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import devices.profiles
from devices.profiles import Device, DeviceProfile, Vendor
from devices.registry import Registry
from ingest.codecs import Codec, DecodeError, RawMessage, build
from ingest.columns import ColumnBuilder
from tests.strategies import RECEIVED_MS

SHIPPED = Path(devices.profiles.__file__).parent / "data"
TESTDATA = Path(__file__).parent / "testdata"
SITE_ZONE = "Asia/Shanghai"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def shipped_profiles() -> list[DeviceProfile]:
    return [DeviceProfile.model_validate(p) for p in load_yaml(SHIPPED / "profiles.yaml")]


def shipped_vendors() -> list[Vendor]:
    return [Vendor.model_validate(v) for v in load_yaml(SHIPPED / "vendors.yaml")]


@dataclass
class Decoded:
    """What one message became: rows ``(device, metric, ts_ms, value, quality)`` and rejections."""

    rows: list[tuple[str, str, int, float, int]] = field(default_factory=list)
    rejected: list[DecodeError] = field(default_factory=list)
    whole: DecodeError | None = None  # set when the message was rejected as a whole

    def values(self) -> dict[tuple[str, str], float]:
        return {(d, m): v for d, m, _, v, _ in self.rows}

    def reasons(self) -> list[str]:
        return [str(e.reason) for e in self.rejected]


class CodecRunner:
    """Decodes messages the way the consumer does: the topic device's profile picks the codec."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._codecs: dict[str, Codec] = {}

    def codec(self, profile_id: str) -> Codec:
        if profile_id not in self._codecs:
            profile = self.registry.profile(profile_id)
            self._codecs[profile_id] = build(profile.codec, site_zone=SITE_ZONE)
        return self._codecs[profile_id]

    def raw(self, topic: str, payload: bytes | str, received_ms: int = RECEIVED_MS) -> RawMessage:
        _, vendor, device_id, _ = topic.split("/")
        body = payload.encode() if isinstance(payload, str) else payload
        return RawMessage(
            topic=topic, payload=body, vendor=vendor, device_id=device_id, received_ms=received_ms
        )

    def decode(
        self, raw: RawMessage, codec: Codec | None = None, builder: ColumnBuilder | None = None
    ) -> Decoded:
        """Decode ``raw`` with ``codec`` (default: its topic device's profile's codec)."""
        if codec is None:
            codec = self.codec(self.registry.interner.devices[raw.device_id].profile)
        b = builder or ColumnBuilder(self.registry.interner, self.registry.profile)
        b.begin(raw)
        out = Decoded()
        try:
            codec.decode(raw, b)
            b.commit()
        except DecodeError as err:
            b.rollback(err)
            out.whole = err
        batch, rejections = b.take()
        names = self.registry.interner.metric_names
        out.rows = [
            (self.registry.device_id(int(d)), names[int(m)], int(t), float(v), int(q))
            for d, m, t, v, q in zip(
                batch.device, batch.metric, batch.ts, batch.value, batch.quality, strict=True
            )
        ]
        out.rejected = [r.error for r in rejections]
        return out

    def message(self, topic: str, payload: bytes | str, **kwargs: int) -> Decoded:
        return self.decode(self.raw(topic, payload, **kwargs))


def make_test_registry(path: Path) -> Registry:
    """A registry on a SQLite file at ``path``: the shipped vendors and profiles plus the test devices."""
    reg = Registry(f"sqlite:///{path}")
    extra = load_yaml(TESTDATA / "registry.yaml")
    assert isinstance(extra, dict)
    reg.put_vendors(shipped_vendors())
    reg.put_profiles(
        shipped_profiles() + [DeviceProfile.model_validate(p) for p in extra["profiles"]]
    )
    reg.put_devices([Device.model_validate(d) for d in extra["devices"]])
    return reg


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on a SQLite file, with the shipped vendors and profiles and the test devices."""
    reg = make_test_registry(tmp_path_factory.mktemp("registry") / "registry.db")
    yield reg
    reg.engine.dispose()


@pytest.fixture(scope="session")
def codecs(registry: Registry) -> CodecRunner:
    """Decodes messages into a real `ColumnBuilder` and reads the batch back as named rows."""
    return CodecRunner(registry)
