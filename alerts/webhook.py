"""Webhook delivery: a bounded queue and a thread per target, retries with backoff, a delivery log.

Alertmanager's contract: an answer is delivered (2xx), recoverable (connection errors, timeouts,
408, 429, 5xx: retried with exponential backoff and jitter, ``Retry-After`` honoured) or hopeless
(any other 4xx: the request itself is wrong, and sending it again changes nothing). Each target has
its own thread and queue, so a dead target costs memory up to its queue bound, then drops its oldest
messages (each one written to the delivery log as dropped), and never slows ingestion or another
target.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from alerts.errors import WebhookConfigError
from alerts.lifecycle import AlertChange
from alerts.wire import encode

logger = logging.getLogger(__name__)


class WebhookSettings(BaseModel):
    """One webhook target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(title="URL the hub POSTs each alert change to (JSON)")
    headers: dict[str, str] = Field(
        default_factory=dict, title="Extra request headers", description="e.g. an Authorization"
    )


class Outcome(enum.StrEnum):
    """How a delivery ended."""

    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: an unrecoverable answer, or out of attempts
    DROPPED = "dropped"  # never tried: the queue was full (the target has been failing)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One change's delivery to one target, as the delivery log keeps it."""

    alert_id: int
    seq: int
    channel: str
    target: str
    outcome: Outcome
    attempts: int
    at_ms: int
    status: int | None = None
    error: str = ""


class DeliveryLog(Protocol):
    """Where deliveries are recorded (``alerts.store.AlertStore`` keeps them with the alert)."""

    def record_delivery(self, delivery: Delivery) -> None:
        """Keep ``delivery``."""
        ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's answer means: delivered, worth retrying, or hopeless."""

    delivered: bool
    recoverable: bool
    reason: str


def classify(status: int) -> Verdict:
    """Alertmanager's split: 2xx delivered; 408, 429 and 5xx recoverable; other 4xx hopeless.

    A 4xx says the request itself is wrong (bad URL, refused credentials, a body the receiver will
    never accept): sending it again changes nothing. 408 and 429 are the receiver asking for later.
    """
    if 200 <= status < 300:
        return Verdict(delivered=True, recoverable=False, reason=f"HTTP {status}")
    if status in (408, 429) or status >= 500:
        return Verdict(delivered=False, recoverable=True, reason=f"HTTP {status}")
    return Verdict(delivered=False, recoverable=False, reason=f"HTTP {status}")


def backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before retry ``attempt`` (1-based): exponential, capped, with jitter in its upper half.

    The jitter keeps many hubs (or many queued changes after an outage) from retrying in lockstep;
    keeping the lower half makes the growth still exponential.
    """
    ceiling = min(cap_s, base_s * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def _retry_after(response: httpx.Response, cap_s: float) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), cap_s)
    return None  # an HTTP-date is rare from webhooks; our own backoff applies then


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One POST: its body, its idempotency key, and the alert changes it reports."""

    key: str
    body: bytes
    refs: tuple[tuple[int, int], ...]  # (alert_id, seq) of each change it reports

    @classmethod
    def of(cls, change: AlertChange) -> Outgoing:
        """One change, as its own message."""
        ref = (change.alert.id, change.entry.seq)
        return cls(key=f"{ref[0]}-{ref[1]}", body=encode(change), refs=(ref,))


@dataclass(slots=True)
class WebhookStats:
    """Counters of one webhook target."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


class WebhookNotifier:
    """POSTs messages as JSON to one URL, from a thread and a bounded queue of its own.

    Called with an `AlertChange` it is a feed subscriber (one message per change); `send` takes any
    `Outgoing` (the people's router sends grouped notifications through it).

    Recoverable failures (connection errors, timeouts, 408, 429, 5xx) are retried with exponential
    backoff (``Retry-After`` wins when the receiver sends seconds), up to ``max_attempts``; any other
    answer is final. Changes to one target go out in order, one at a time: while it retries, later
    changes wait in the queue, and when the queue is full the oldest is dropped. Every change ends in
    the delivery log as delivered, failed or dropped.
    """

    def __init__(
        self,
        url: str,
        *,
        log: DeliveryLog | None = None,
        headers: Mapping[str, str] | None = None,
        channel: str = "webhook",
        queue_size: int = 1000,
        max_attempts: int = 8,
        base_delay_s: float = 0.5,
        max_delay_s: float = 60.0,
        timeout_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare a notifier; `start` runs its thread."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"webhook {url!r}: needs an http:// or https:// URL with a host"
            raise WebhookConfigError(msg)
        self.url = url
        self.channel = channel
        self._log = log
        self._headers = {"content-type": "application/json", **(headers or {})}
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._queue: deque[Outgoing] = deque()
        self._dropped: list[Outgoing] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self.stats = WebhookStats()

    @property
    def target(self) -> str:
        """The URL without its query (which may hold a token): what logs and the delivery log show."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

    @property
    def pending(self) -> int:
        """Changes waiting in the queue."""
        return len(self._queue)

    def __call__(self, change: AlertChange) -> None:
        """Queue ``change`` as a message of its own (never blocks)."""
        self.send(Outgoing.of(change))

    def send(self, message: Outgoing) -> None:
        """Queue ``message`` (never blocks); drop the oldest queued one when the queue is full."""
        with self._cond:
            if len(self._queue) >= self.queue_size:
                self._dropped.append(self._queue.popleft())
                self.stats.dropped += 1
            self._queue.append(message)
            self._cond.notify()

    def start(self) -> None:
        """Start the delivery thread."""
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"alerts.webhook[{self.target}]", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; a delivery in backoff gives up, and what is still queued stays unsent."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._queue:
            logger.warning("webhook %s stopped with %s changes unsent", self.target, self.pending)

    def _take(self) -> tuple[list[Outgoing], Outgoing | None]:
        with self._cond:
            while not self._queue and not self._dropped and not self._stopping.is_set():
                self._cond.wait()
            dropped, self._dropped = self._dropped, []
            return dropped, (self._queue.popleft() if self._queue else None)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stopping.is_set():
                dropped, message = self._take()
                for d in dropped:
                    self._record(d, Outcome.DROPPED, 0, None, "queue full: the target is failing")
                if message is not None:
                    try:
                        self._deliver(client, message)
                    except Exception:  # a bug here must not end deliveries to this target
                        logger.exception("webhook %s: delivering failed", self.target)

    def _deliver(self, client: httpx.Client, message: Outgoing) -> None:
        body = message.body
        headers = {**self._headers, "idempotency-key": message.key}
        status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connect, read, timeout: the receiver may be back
                status, verdict = None, Verdict(False, True, f"{type(exc).__name__}: {exc}")
            else:
                status, verdict = response.status_code, classify(response.status_code)
                wait = _retry_after(response, self.max_delay_s)
            if verdict.delivered:
                self._record(message, Outcome.DELIVERED, attempt, status, "")
                return
            self._note_error(verdict.reason)
            if not verdict.recoverable or attempt == self.max_attempts:
                self._record(message, Outcome.FAILED, attempt, status, verdict.reason)
                return
            self.stats.retries += 1
            if wait is None:
                wait = backoff(attempt, self.base_delay_s, self.max_delay_s, self._rng)
            if self._stopping.wait(wait):
                self._record(message, Outcome.FAILED, attempt, status, "hub stopping")
                return

    def _note_error(self, reason: str) -> None:
        # Log a failure when it changes, not on every retry (Alertmanager's retry stage).
        if reason != self._last_error:
            logger.warning("webhook %s: %s (retrying while recoverable)", self.target, reason)
            self._last_error = reason

    def _record(
        self, message: Outgoing, outcome: Outcome, attempts: int, status: int | None, error: str
    ) -> None:
        if outcome is Outcome.DELIVERED:
            self.stats.delivered += 1
            if self._last_error:
                logger.info("webhook %s delivers again", self.target)
                self._last_error = ""
        elif outcome is Outcome.FAILED:
            self.stats.failed += 1
            logger.error(
                "webhook %s: gave up on message %s after %s attempts: %s",
                self.target,
                message.key,
                attempts,
                error,
            )
        if self._log is None:
            return
        at_ms = int(time.time() * 1000)
        for alert_id, seq in message.refs:
            delivery = Delivery(
                alert_id=alert_id,
                seq=seq,
                channel=self.channel,
                target=self.target,
                outcome=outcome,
                attempts=attempts,
                at_ms=at_ms,
                status=status,
                error=error[:500],
            )
            try:
                self._log.record_delivery(delivery)
            except Exception:
                logger.exception("webhook %s: could not write the delivery log", self.target)
