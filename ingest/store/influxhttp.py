"""Talking to InfluxDB over HTTP: writes (1.x ``/write``, or influxdb-client's v2 write API), InfluxQL reads.

Writes go out synchronously and are retried here, with exponential backoff and jitter, for what may
pass (connection errors, 429, 5xx; ``Retry-After`` honoured). influxdb-client's own batching mode is
not used: it buffers in a background thread and reports failures to a callback, while the pipeline
must know a batch is durable before it acknowledges the messages. Its own retry (``WritesRetry``)
is not used either: it fixes its deadline when constructed, so one long-lived instance stops retrying.

Reads use ``/query`` (InfluxQL), which InfluxDB 1.x, 2.x (through a DBRP mapping) and 3.x all answer,
asked for ``chunked`` JSON so no server-side row limit truncates a result silently.
"""

from __future__ import annotations

import gzip
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlencode

import msgspec
import numpy as np
import urllib3
from numpy.typing import NDArray

from ingest.errors import StoreError
from ingest.store.influxconf import InfluxSettings

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient

logger = logging.getLogger(__name__)

T = TypeVar("T")
Precision: TypeAlias = Literal["ms", "ns"]

_BEYOND_RETENTION = re.compile(rb"points beyond retention policy dropped=(\d+)")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_FIRST_DELAY_S = 0.1
_MAX_DELAY_S = 5.0


class _Series(msgspec.Struct, frozen=True):
    name: str = ""
    tags: dict[str, str] = {}
    columns: list[str] = []
    values: list[list[Any]] = []


class _Result(msgspec.Struct, frozen=True):
    statement_id: int = 0
    series: list[_Series] = []
    error: str | None = None


class _Chunk(msgspec.Struct, frozen=True):
    results: list[_Result] = []
    error: str | None = None


_DECODER = msgspec.json.Decoder(_Chunk)


@dataclass(slots=True)
class Series:
    """One series of a query result: its tags, column names and rows (merged across chunks)."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)

    def array(self, name: str, dtype: type[np.generic]) -> NDArray[Any]:
        """One column as a numpy array (JSON null becomes NaN in a float column)."""
        if not self.values:
            return np.empty(0, dtype=dtype)
        table = np.array(self.values, dtype=object).reshape(len(self.values), -1)
        return table[:, self.columns.index(name)].astype(dtype)


class _RetryableError(Exception):
    """A failure that may pass: the request is sent again after a pause."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:  # noqa: ANN401 - urllib3 or influxdb-client headers
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def server_major(version: str) -> int:
    """The major version in a ``X-Influxdb-Version`` header: ``1.6.7~rc0`` -> 1, ``v2.7.10`` -> 2."""
    match = re.match(r"v?(\d+)", version.strip())
    if match is None:
        msg = f"InfluxDB reported an unreadable version {version!r}"
        raise StoreError(msg)
    return int(match.group(1))


class InfluxHttp:
    """One InfluxDB server: ping, InfluxQL queries, line-protocol writes. Thread-safe."""

    def __init__(self, settings: InfluxSettings) -> None:
        """Connect (``/ping``, retried like any request) and pick the write API."""
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self._http = urllib3.PoolManager(
            maxsize=settings.concurrency + 2,
            timeout=urllib3.Timeout(total=settings.timeout_s),
            retries=False,
        )
        self._headers: dict[str, str] = {}
        if settings.username is not None and settings.password is not None:
            self._headers.update(
                urllib3.make_headers(
                    basic_auth=f"{settings.username}:{settings.password.get_secret_value()}"
                )
            )
        if settings.token is not None:
            self._headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        self.version = self._retrying("ping", self._ping)
        self.major = server_major(self.version)
        api = settings.api if settings.api != "auto" else ("v1" if self.major == 1 else "v2")
        self.api = api
        self._client: InfluxDBClient | None = None
        self._write_api: Any = None
        if api == "v2":
            # influxdb-client only for the v2 write path: a hub on its embedded store or on
            # InfluxDB 1.x never loads it (13 MB and 0.2 s of start-up).
            from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415
            from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

            self._client = InfluxDBClient(
                url=self.url,
                token=settings.token.get_secret_value() if settings.token else "",
                org=settings.org,
                enable_gzip=settings.gzip,
                timeout=int(settings.timeout_s * 1000),
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self.dropped_beyond_retention = 0
        self._warned_drop = threading.Event()
        logger.info("InfluxDB %s at %s; writing through the %s API", self.version, self.url, api)

    # -- requests -------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, fields: dict[str, str], body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        headers = dict(self._headers)
        try:
            if body is None and method == "GET":
                return self._http.request(method, self.url + path, fields=fields, headers=headers)
            if body is None:  # a form: InfluxQL statements can be longer than a URL may be
                return self._http.request_encode_body(
                    method, self.url + path, fields=fields, headers=headers, encode_multipart=False
                )
            if self.settings.gzip:
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            url = self.url + path + "?" + urlencode(fields)
            return self._http.request(method, url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            msg = f"{method} {path}: {exc}"
            raise _RetryableError(msg) from exc

    def _check(self, response: urllib3.BaseHTTPResponse, what: str) -> None:
        if response.status < 300:
            return
        detail = f"{what}: HTTP {response.status} {response.data[:300]!r}"
        if response.status in _RETRY_STATUS:
            raise _RetryableError(detail, _retry_after(response.headers))
        raise StoreError(detail)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        delay = _FIRST_DELAY_S
        for attempt in range(self.settings.max_retries + 1):
            try:
                return call()
            except _RetryableError as exc:
                if attempt == self.settings.max_retries:
                    msg = f"InfluxDB at {self.url}: {exc} (after {attempt + 1} attempts)"
                    raise StoreError(msg) from exc
                pause = exc.retry_after if exc.retry_after is not None else delay
                pause *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not secrecy
                logger.warning("%s failed (%s); retry %s in %.2f s", what, exc, attempt + 1, pause)
                time.sleep(pause)
                delay = min(delay * 2, _MAX_DELAY_S)
        msg = "unreachable"
        raise AssertionError(msg)

    def _ping(self) -> str:
        response = self._request("GET", "/ping", fields={})
        self._check(response, "ping")
        version = response.headers.get("X-Influxdb-Version")
        if not version:
            msg = f"{self.url}/ping did not say which InfluxDB it is (no X-Influxdb-Version)"
            raise StoreError(msg)
        return str(version)

    # -- InfluxQL -------------------------------------------------------------------------------

    def query(
        self, statement: str, *, rp: str | None = None, db: str | None = None
    ) -> list[Series]:
        """Run one InfluxQL statement; the series of its result, merged across chunks.

        Raises:
            StoreError: the server refused it or stayed unreachable.
        """
        fields = {
            "q": statement,
            "db": db or self.settings.database,
            "epoch": "ms",
            "chunked": "true",
            "chunk_size": "10000",
        }
        if rp:
            fields["rp"] = rp

        def call() -> bytes:
            response = self._request("POST", "/query", fields=fields)
            self._check(response, f"query {statement[:200]!r}")
            return bytes(response.data)

        return _merge(self._retrying("query", call), statement)

    # -- writes ---------------------------------------------------------------------------------

    def write(self, lines: bytes, precision: Precision = "ms") -> int:
        """Write line protocol durably, or raise StoreError after the retries.

        Returns how many points InfluxDB dropped as older than the retention policy (1.x says so).
        """
        if not lines.strip():
            return 0
        if self._write_api is not None:
            self._retrying("write", lambda: self._write_v2(lines, precision))
            return 0
        return self._retrying("write", lambda: self._write_v1(lines, precision))

    def _write_v1(self, lines: bytes, precision: Precision) -> int:
        fields = {
            "db": self.settings.database,
            "rp": self.settings.retention_policy,
            "precision": precision,
        }
        response = self._request("POST", "/write", fields=fields, body=lines)
        if response.status == 400:
            dropped = _BEYOND_RETENTION.search(response.data)
            if dropped is not None:
                self._dropped(int(dropped.group(1)))
                return int(dropped.group(1))
        self._check(response, "write")
        return 0

    def _write_v2(self, lines: bytes, precision: Precision) -> None:
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415
        from influxdb_client.rest import ApiException  # noqa: PLC0415

        try:
            self._write_api.write(
                bucket=self.settings.write_bucket,
                org=self.settings.org,
                record=lines,
                write_precision=WritePrecision.MS if precision == "ms" else WritePrecision.NS,
            )
        except ApiException as exc:
            detail = f"write: HTTP {exc.status} {str(exc.body)[:300]}"
            if exc.status in _RETRY_STATUS:
                raise _RetryableError(detail, _retry_after(exc.headers)) from exc
            raise StoreError(detail) from exc
        except urllib3.exceptions.HTTPError as exc:
            msg = f"write: {exc}"
            raise _RetryableError(msg) from exc

    def _dropped(self, n: int) -> None:
        # Readings older than the retention policy: InfluxDB drops them, which is what retention
        # would do an instant later. Counted; said once, not per batch.
        self.dropped_beyond_retention += n
        if not self._warned_drop.is_set():
            self._warned_drop.set()
            logger.warning("InfluxDB dropped %s readings older than its retention policy", n)

    def delete_v2(self, stop_iso: str, predicate: str) -> None:
        """Delete through the v2 delete API (2.x): everything matching ``predicate`` before ``stop``."""
        if self._client is None:
            msg = "the v2 delete API needs the v2 client"
            raise StoreError(msg)
        client = self._client
        self._retrying(
            "delete",
            lambda: client.delete_api().delete(
                start="1677-09-21T00:12:44Z",
                stop=stop_iso,
                predicate=predicate,
                bucket=self.settings.write_bucket,
                org=self.settings.org,
            ),
        )

    def close(self) -> None:
        """Release the connections."""
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
        self._http.clear()


def _merge(body: bytes, statement: str) -> list[Series]:
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            chunk = _DECODER.decode(line)
        except msgspec.DecodeError as exc:
            msg = f"InfluxDB answered {statement[:200]!r} with unreadable JSON: {line[:200]!r}"
            raise StoreError(msg) from exc
        if chunk.error:
            msg = f"InfluxDB refused {statement[:200]!r}: {chunk.error}"
            raise StoreError(msg)
        for result in chunk.results:
            if result.error:
                msg = f"InfluxDB refused {statement[:200]!r}: {result.error}"
                raise StoreError(msg)
            for s in result.series:
                key = (s.name, tuple(sorted(s.tags.items())))
                into = merged.get(key)
                if into is None:
                    merged[key] = Series(s.name, dict(s.tags), list(s.columns), list(s.values))
                else:
                    into.values.extend(s.values)
    return list(merged.values())
