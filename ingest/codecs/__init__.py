"""Codec registry: each codec module registers itself; profiles name a codec and its settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import pydantic

from ingest.codecs.base import Codec, DecodeError, DecodeReason, RawMessage, Sink
from ingest.errors import IngestError

__all__ = [
    "Codec",
    "CodecConfigError",
    "CodecFactory",
    "DecodeError",
    "DecodeReason",
    "RawMessage",
    "Sink",
    "build",
    "names",
    "register",
]


class CodecConfigError(IngestError):
    """A profile's codec settings that do not validate; the message names the field."""


class CodecFactory(Protocol):
    """What a codec module registers: its settings model and how to make a codec from it."""

    config: type[pydantic.BaseModel]

    def __call__(self, config: Any, *, site_zone: str) -> Codec: ...  # noqa: ANN401 - each codec's own model


_F = TypeVar("_F", bound=Callable[..., Codec])
_REGISTRY: dict[str, tuple[type[pydantic.BaseModel], Callable[..., Codec]]] = {}


def register(name: str, config: type[pydantic.BaseModel]) -> Callable[[_F], _F]:
    """Class decorator: make a codec available to profiles as ``{"codec": name, ...}``."""

    def deco(factory: _F) -> _F:
        if name in _REGISTRY:
            msg = f"codec {name!r} registered twice"
            raise RuntimeError(msg)
        _REGISTRY[name] = (config, factory)
        return factory

    return deco


def names() -> list[str]:
    """Names of every registered codec."""
    return sorted(_REGISTRY)


def build(settings: Mapping[str, Any], *, site_zone: str = "Asia/Shanghai") -> Codec:
    """Validate a profile's codec settings and make the codec (decoders are built once, here).

    Args:
        settings: ``{"codec": name, ...}`` from a `devices.profiles.DeviceProfile`.
        site_zone: IANA zone for timestamps that carry no zone.

    Raises:
        CodecConfigError: unknown codec name, or settings that do not validate.
    """
    name = settings.get("codec")
    if not isinstance(name, str) or name not in _REGISTRY:
        msg = f"codec {name!r} is unknown; known codecs: {', '.join(names())}"
        raise CodecConfigError(msg)
    config_model, factory = _REGISTRY[name]
    try:
        config = config_model.model_validate(dict(settings))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"codec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        msg = f"codec {name!r} settings are invalid: {problems}"
        raise CodecConfigError(msg) from exc
    return factory(config, site_zone=site_zone)


# Codec modules register themselves on import. An explicit list: no scanning, no swallowed ImportError.
from ingest.codecs import mapping, senml  # noqa: E402
from ingest.sl651 import codec as sl651  # noqa: E402 - SL 651-2014 frames (lives with its TCP server)

__all__ += ["mapping", "senml", "sl651"]
