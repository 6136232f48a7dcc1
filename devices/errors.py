"""Errors raised by the device registry."""


class DeviceError(Exception):
    """Root of every error the devices package raises."""


class NotFoundError(DeviceError):
    """A vendor, profile or device that the registry does not hold."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key!r}")


class InvalidDefinitionError(DeviceError):
    """A profile or device definition that does not validate; the message names the field."""


class ConflictError(DeviceError):
    """The object exists already (HTTP 409): e.g. registering a device id twice."""
