"""The ingest pipeline running for real: a registry file, a DuckDB store, dead letters, a Mosquitto session."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from devices.registry import Registry
from hub.embedded_broker import EmbeddedBroker
from ingest.consumer import Consumer, DecodeOptions
from ingest.deadletter import DeadLetterStore
from ingest.decodepool import PooledConsumer
from ingest.mqtt import MqttOptions
from ingest.pipeline import IngestPipeline
from ingest.store.filestore import FileStore
from tests.conftest import Broker
from tests.ingest.codecs.conftest import SITE_ZONE, make_test_registry


class RunningPipeline:
    """An `IngestPipeline` on its own event loop in a thread, as `hub run` runs it, until closed."""

    def __init__(
        self,
        registry: Registry,
        store: FileStore,
        dead: DeadLetterStore,
        broker: Broker | EmbeddedBroker,
        *,
        client_id: str = "hub-ingest",
        max_payload: int = 256 * 1024,
        username: str | None = None,
        password: str | None = None,
        decode_workers: int = 0,
        write_interval: float = 0.0,
    ) -> None:
        local = Consumer(registry, DecodeOptions(site_zone=SITE_ZONE, max_payload=max_payload))
        consumer: Consumer | PooledConsumer = local
        if decode_workers:
            consumer = PooledConsumer(local, workers=decode_workers)
        self.pipeline = IngestPipeline(
            registry,
            store,
            dead,
            MqttOptions(
                host=broker.host,
                port=broker.port,
                client_id=client_id,
                username=username,
                password=password,
            ),
            consumer=consumer,
            write_interval=write_interval,
        )
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(5)
        assert self.pipeline.transport.connected.wait(10), "pipeline did not connect"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.pipeline.run())
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    def wait_until(self, done: Callable[[IngestPipeline], bool], timeout: float = 30.0) -> None:
        """Wait until ``done(pipeline)`` holds; fail with the pipeline's counters if it never does."""
        deadline = time.monotonic() + timeout
        while not done(self.pipeline):
            if time.monotonic() > deadline:
                c = self.pipeline.consumer.counters
                pytest.fail(
                    f"pipeline did not get there in {timeout} s: stats {self.pipeline.stats}, "
                    f"messages {c.messages}, dead letters {c.dead_letters}"
                )
            time.sleep(0.02)

    def close(self) -> None:
        """Cancel the pipeline (it flushes and acknowledges what it decoded) and join its thread."""
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(15)
        assert not self._thread.is_alive(), "pipeline thread did not stop"
        if isinstance(self.pipeline.consumer, PooledConsumer):
            self.pipeline.consumer.close()

    def __enter__(self) -> RunningPipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture
def test_registry(tmp_path: Path) -> Iterator[Registry]:
    """This test's own registry file with the shipped profiles and the golden-test devices."""
    reg = make_test_registry(tmp_path / "registry.db")
    yield reg
    reg.engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    """This test's own DuckDB store file."""
    s = FileStore(tmp_path / "readings.duckdb")
    yield s
    s.close()


@pytest.fixture
def dead_letters(tmp_path: Path) -> DeadLetterStore:
    """This test's own dead-letter table."""
    return DeadLetterStore(f"sqlite:///{tmp_path / 'dead.db'}")
