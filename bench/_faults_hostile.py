"""Hostile payloads through the real broker to a running hub: nothing crashes, every reject is explained.

Method. A Mosquitto with the hub's configuration and a ``python -m hub run`` process on loopback, with
the shipped profiles and a small demo city (every shipped profile). The simulator writes one valid
payload per device; each message sent is one of them, mutated (or, now and then, left valid): cut
short, a value's type swapped, numbers too large for a double or an int64, NaN and Infinity bare and as
strings, nesting deeper than any parser's limit, UTF-16/32 and invalid UTF-8, a record list grown to
thousands of records, a payload over the hub's size limit, random bytes, a key dropped, a device that
is not registered or belongs to another vendor, a status topic with junk. A raw QoS 1 publisher puts
them on the wire (`bench._rawpub`); the hub must take them all.

Figures (name=value lines): ``fuzz_payloads`` (messages the hub took), ``fuzz_crashes`` (codec bugs +
handler errors + tracebacks in the hub's log + 1 if the hub died), ``fuzz_rejects`` (dead letters),
``fuzz_unexplained`` (rejections without a dead letter row, or rows without a reason and a detail),
``fuzz_readings_stored`` and ``fuzz_msgs_s``. Then, on the same hub, schemathesis walks the OpenAPI
document as the administrator with valid and invalid data (`fuzz_api`): ``api_fuzz_requests``,
``api_fuzz_server_errors`` (5xx answers) and ``api_fuzz_not_problems`` (4xx answers that are not
RFC 9457 problem details).

`run` is what ``bench/faults.py`` calls; ``python bench/_faults_hostile.py`` runs it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker, free_port
from bench._rawpub import RawPublisher

HUB_MAX_PAYLOAD = 256 * 1024  # HubSettings' default ingest.max_payload_bytes
BROKER_MAX_PACKET = 1024 * 1024  # max_packet_size of the hub's Mosquitto configuration
SLICE = 500  # messages written per socket write
WINDOW = 5000  # messages the publisher may have unacknowledged

Mutation = Callable[[random.Random, bytes], bytes]

# A JSON scalar right after ``:``, ``[`` or ``,``: what type swaps and number mutations replace.
_VALUE = re.compile(rb'(?<=[:\[,])(-?\d[\d.eE+-]*|"(?:[^"\\]|\\.)*"|true|false|null)')
_NUMBER = re.compile(rb"(?<=[:\[,])-?\d[\d.eE+-]*")

SWAPS = (b'"12.5"', b"null", b"true", b"[]", b"{}", b'"x"', b"[1,2]", b'{"v":1}', b'""', b"0")
HUGE = (
    b"1e309",
    b"-1e309",
    b"1" + b"0" * 400,
    b"-" + b"9" * 400,
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1e-400",
    b"1.7976931348623157e308",
    b"4.9e-324",
)
NAN_INF = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'"NaN"',
    b'"nan"',
    b'"inf"',
    b'"-Infinity"',
    b'"1e999"',
)


def _replace_one(
    rng: random.Random, payload: bytes, pattern: re.Pattern[bytes], by: bytes
) -> bytes:
    spots = [m.span() for m in pattern.finditer(payload)]
    if not spots:
        return by
    start, end = rng.choice(spots)
    return payload[:start] + by + payload[end:]


def truncate(rng: random.Random, payload: bytes) -> bytes:
    """Cut short anywhere, as a dropped link or a full device buffer does."""
    return payload[: rng.randrange(max(len(payload), 1))]


def type_swap(rng: random.Random, payload: bytes) -> bytes:
    """One value becomes a string, null, a boolean, an array or an object."""
    return _replace_one(rng, payload, _VALUE, rng.choice(SWAPS))


def huge_number(rng: random.Random, payload: bytes) -> bytes:
    """One number beyond a double, an int64 or a uint64, or below the smallest double."""
    return _replace_one(rng, payload, _NUMBER, rng.choice(HUGE))


def nan_inf(rng: random.Random, payload: bytes) -> bytes:
    """One number becomes NaN or Infinity, bare (not JSON) or as a string."""
    return _replace_one(rng, payload, _NUMBER, rng.choice(NAN_INF))


def deep_nesting(rng: random.Random, payload: bytes) -> bytes:
    """The payload, or one value in it, inside 100 to 100,000 arrays or objects."""
    depth = rng.choice((100, 1000, 10_000, 100_000))
    if rng.random() < 0.5:
        return b"[" * depth + payload + b"]" * depth
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    return _replace_one(rng, payload, _VALUE, inner)


def wrong_encoding(rng: random.Random, payload: bytes) -> bytes:
    """UTF-16 or UTF-32 (with or without a BOM), a UTF-8 BOM, or bytes that are not UTF-8."""
    choice = rng.randrange(5)
    text = payload.decode("utf-8", errors="replace")
    if choice == 0:
        return text.encode(rng.choice(("utf-16", "utf-16-le", "utf-16-be")))
    if choice == 1:
        return text.encode(rng.choice(("utf-32", "utf-32-le")))
    if choice == 2:
        return b"\xef\xbb\xbf" + payload
    at = rng.randrange(len(payload) + 1)
    junk = rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"))
    if choice == 3:
        return payload[:at] + junk + payload[at:]
    # Inside a string, where a decoder that skips strings lightly would miss it.
    quote = payload.find(b'"')
    return payload if quote < 0 else payload[: quote + 1] + junk + payload[quote + 1 :]


def _largest_list(node: Any) -> list[Any] | None:  # noqa: ANN401 - any JSON
    best: list[Any] | None = node if isinstance(node, list) else None
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        found = _largest_list(child)
        if found is not None and (best is None or len(found) > len(best)):
            best = found
    return best


def giant_array(rng: random.Random, payload: bytes) -> bytes:
    """The payload's longest list grown to 1,000-5,000 items (kept under the hub's size limit)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        copies = max(1, min(1000, HUB_MAX_PAYLOAD // (len(payload) + 1)))  # a giant, not a gigabyte
        return b"[" + b",".join([payload] * copies) + b"]"
    items = _largest_list(doc)
    if not items:
        return b"[" + b",".join([b"0"] * 5000) + b"]"
    grown = [items[i % len(items)] for i in range(rng.randrange(1000, 5001))]
    items[:] = grown
    out = json.dumps(doc, separators=(",", ":")).encode()
    return out[: HUB_MAX_PAYLOAD - 1] if len(out) >= HUB_MAX_PAYLOAD else out


def oversized(rng: random.Random, payload: bytes) -> bytes:
    """Over the hub's 256 KiB limit but under the broker's 1 MiB packet limit."""
    size = rng.randrange(HUB_MAX_PAYLOAD + 1, BROKER_MAX_PACKET - 4096)
    return payload + b" " * (size - len(payload))


def random_bytes(rng: random.Random, payload: bytes) -> bytes:
    """Noise of up to 512 bytes (empty included)."""
    del payload
    return rng.randbytes(rng.randrange(513))


def byte_flip(rng: random.Random, payload: bytes) -> bytes:
    """One to eight bytes replaced by random ones."""
    out = bytearray(payload)
    for _ in range(rng.randrange(1, 9)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _drop_key(rng: random.Random, node: Any) -> bool:  # noqa: ANN401 - any JSON
    dicts: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if n:
                dicts.append(n)
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    if not dicts:
        return False
    target = rng.choice(dicts)
    del target[rng.choice(list(target))]
    return True


def key_drop(rng: random.Random, payload: bytes) -> bytes:
    """One key (a time, a device id, a value, a records list) removed."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        return payload
    _drop_key(rng, doc)
    return json.dumps(doc).encode()


MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate,
    "type_swap": type_swap,
    "huge_number": huge_number,
    "nan_inf": nan_inf,
    "deep_nesting": deep_nesting,
    "wrong_encoding": wrong_encoding,
    "giant_array": giant_array,
    "oversized": oversized,
    "random_bytes": random_bytes,
    "byte_flip": byte_flip,
    "key_drop": key_drop,
}
# Relative frequency of each kind of message: giant and oversized payloads are rare (each costs
# thousands of readings or a quarter of a megabyte), plain mutations common, some stay valid.
WEIGHTS: dict[str, float] = {
    "valid": 6,
    "truncate": 10,
    "type_swap": 14,
    "huge_number": 10,
    "nan_inf": 10,
    "deep_nesting": 6,
    "wrong_encoding": 8,
    "giant_array": 0.2,
    "oversized": 0.3,
    "random_bytes": 6,
    "byte_flip": 10,
    "key_drop": 8,
    "wrong_device": 4,
    "status_junk": 3,
}


def mutate(rng: random.Random, payload: bytes, kind: str | None = None) -> tuple[str, bytes]:
    """``(kind, mutated payload)``: one of `MUTATIONS`, chosen at random unless ``kind`` is given."""
    name = kind or rng.choice(sorted(MUTATIONS))
    return name, MUTATIONS[name](rng, payload)


def valid_corpus(
    device_count: int = 300, seed: int = 7
) -> tuple[list[Any], list[tuple[str, bytes]]]:
    """The demo city's devices and one valid ``(topic, payload)`` per sender, from the simulator."""
    from hub.democity import demo_devices
    from hub.simulator import Simulator

    devices = demo_devices(device_count, seed=seed)
    sim = Simulator(devices, seed=seed)
    out: list[tuple[str, bytes]] = []
    sim.step(sim.senders, sim.moment(rate=100.0), lambda t, p: out.append((t, bytes(p))))
    return devices, out


def messages(
    corpus: Sequence[tuple[str, bytes]], count: int, seed: int
) -> Iterator[tuple[str, str, bytes]]:
    """``count`` hostile ``(kind, topic, payload)`` messages made from the valid ``corpus``."""
    rng = random.Random(seed)
    kinds = sorted(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    vendors = sorted({t.split("/")[1] for t, _ in corpus})
    for _ in range(count):
        topic, payload = rng.choice(corpus)
        kind = rng.choices(kinds, weights)[0]
        if kind == "valid":
            yield kind, topic, payload
        elif kind == "wrong_device":
            _, vendor, device, _ = topic.split("/")
            other = rng.choice([v for v in vendors if v != vendor] or ["nobody"])
            topic = rng.choice(
                (
                    f"sensors/{vendor}/no-such-{rng.randrange(10**6)}/up",
                    f"sensors/{other}/{device}/up",
                    f"sensors/{vendor}/{'x' * rng.randrange(65, 5000)}/up",  # past any id column
                )
            )
            yield kind, topic, payload
        elif kind == "status_junk":
            yield (
                kind,
                topic.rsplit("/", 1)[0] + "/status",
                rng.choice((b"maybe", b'{"state":"up"}', payload, rng.randbytes(16))),
            )
        else:
            yield kind, topic, MUTATIONS[kind](rng, payload)


class HubProcess:
    """``python -m hub run`` on loopback against ``broker_port``; stopped by its PID."""

    def __init__(self, data_dir: Path, broker_port: int) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "hub.log"
        env = {
            **os.environ,
            "HUB_DATA_DIR": str(data_dir),
            "HUB_MQTT__EMBEDDED": "false",
            "HUB_MQTT__HOST": "127.0.0.1",
            "HUB_MQTT__PORT": str(broker_port),
            "HUB_HTTP__PORT": str(self.port),
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[1],
            )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                if self.http.get("/healthz").json().get("broker_connected"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not come up in 60 s")
            time.sleep(0.2)
        password = (data_dir / "initial-admin-password").read_text().strip()
        r = self.http.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    @property
    def alive(self) -> bool:
        """The process still runs."""
        return self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        """``GET /api/v1/status``."""
        r = self.http.get("/api/v1/status")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def tracebacks(self) -> int:
        """Tracebacks the hub logged: each is a bug somewhere (a handled one included)."""
        return self.log.read_text(errors="replace").count("Traceback (most recent call last)")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        self.http.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def register_city(data_dir: Path, devices: Sequence[Any]) -> None:
    """The shipped profiles and ``devices`` in a fresh hub's registry, as ``hub demo`` does."""
    from devices.loader import load_shipped
    from devices.registry import Registry
    from hub.db import upgrade
    from hub.settings import HubSettings

    settings = HubSettings(data_dir=data_dir)
    upgrade(settings.registry)
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(list(devices))
    registry.engine.dispose()


def publish_all(
    port: int, stream: Iterator[tuple[str, str, bytes]], count: int
) -> tuple[Counter[str], float]:
    """Publish ``count`` messages at QoS 1; returns the kinds sent and the seconds it took."""
    pub = RawPublisher("127.0.0.1", port, f"fuzz-{os.getpid()}")
    kinds: Counter[str] = Counter()
    sent = 0
    started = time.monotonic()
    try:
        while sent < count:
            packets = []
            for kind, topic, payload in (next(stream) for _ in range(min(SLICE, count - sent))):
                kinds[kind] += 1
                packets.append(pub.packet(topic.encode(), payload))
            pub.send(packets)
            sent += len(packets)
            while pub.acked < sent - WINDOW:
                time.sleep(0.005)
        deadline = time.monotonic() + 60
        while pub.acked < sent and time.monotonic() < deadline:
            time.sleep(0.01)
        if pub.acked < sent:
            raise RuntimeError(f"the broker acknowledged only {pub.acked} of {sent} messages")
    finally:
        pub.close()
    return kinds, time.monotonic() - started


def dead_letter_rows(data_dir: Path) -> tuple[int, int]:
    """Dead letter rows in the hub's database, and those without a reason or a detail."""
    with sqlite3.connect(f"file:{data_dir / 'hub.db'}?mode=ro", uri=True) as db:
        total = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        blank = db.execute(
            "SELECT count(*) FROM dead_letters WHERE trim(reason) = '' OR trim(detail) = ''"
        ).fetchone()[0]
    return int(total), int(blank)


# Operations the API fuzz leaves alone: they would end its own session or demote its account (and so
# turn every later request into a 401), or make the hub probe whatever camera address was generated.
API_EXCLUDED = {
    ("POST", "/api/v1/auth/logout"),
    ("DELETE", "/api/v1/auth/tokens/{token_id}"),
    ("PATCH", "/api/v1/users/{name}"),
    ("POST", "/api/v1/cameras/{camera_id}/check"),
    ("GET", "/api/v1/cameras/{camera_id}/snapshot"),
}


def fuzz_api(base_url: str, token: str, *, examples: int = 20, seed: int = 0) -> dict[str, Any]:
    """schemathesis against the hub's OpenAPI document, as the administrator, valid and invalid data.

    Returns ``requests``, ``server_errors`` and ``not_problems`` (4xx answers that are not RFC 9457
    problem details), each failure as ``(method, path, status, body excerpt)`` in ``failures``.
    """
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.result import Err

    auth = {"Authorization": f"Bearer {token}"}
    session = requests.Session()
    session.headers.update(auth)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=auth)
    out: dict[str, Any] = {"requests": 0, "server_errors": 0, "not_problems": 0, "failures": []}

    def check(method: str, path: str, response: Any) -> None:  # noqa: ANN401 - requests.Response
        out["requests"] += 1
        status = int(response.status_code)
        kind = response.headers.get("content-type") or ""
        kind = kind[0] if isinstance(kind, list) else kind  # schemathesis keeps every value
        if status >= 500:
            out["server_errors"] += 1
        elif 400 <= status < 500 and not (
            kind.startswith("application/problem+json")
            and isinstance(body := _json_or_none(response.content), dict)
            and body.get("status") == status
            and isinstance(body.get("title"), str)
        ):
            out["not_problems"] += 1
        else:
            return
        out["failures"].append((method, path, status, response.text[:300]))

    def fuzz(op: Any, mode: Any) -> None:  # noqa: ANN401 - schemathesis types
        @hypothesis_seed(seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:  # noqa: ANN401 - schemathesis.Case
            response = case.call(base_url=base_url, session=session, timeout=30)
            check(op.method.upper(), op.path, response)

        # Unsatisfiable: no invalid data to make for this operation (nothing in it has constraints).
        with contextlib.suppress(Unsatisfiable):
            one()

    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise RuntimeError(f"the hub's OpenAPI document is invalid: {result.err()}")  # noqa: TRY004
        op = result.ok()
        if (op.method.upper(), op.path) not in API_EXCLUDED:
            for mode in schemathesis.GenerationMode:
                fuzz(op, mode)
    session.close()
    return out


def _json_or_none(content: bytes) -> Any:  # noqa: ANN401 - any JSON
    try:
        return json.loads(content)
    except ValueError:
        return None


def run(args: argparse.Namespace | Sequence[str] | None = None) -> dict[str, float]:
    """Send the hostile messages and return the figures (also printed as name=value lines)."""
    ns = args if isinstance(args, argparse.Namespace) else parse_args(args)
    count = int(getattr(ns, "fuzz_payloads", 100_000))
    seed = int(getattr(ns, "fuzz_seed", 1))
    devices, corpus = valid_corpus(int(getattr(ns, "fuzz_devices", 300)))
    with BenchBroker() as broker, tempfile.TemporaryDirectory(prefix="fuzz-hub-") as tmp:
        data_dir = Path(tmp)
        register_city(data_dir, devices)
        hub = HubProcess(data_dir, broker.port)
        try:
            started = time.monotonic()
            kinds, _ = publish_all(broker.port, messages(corpus, count, seed), count)
            deadline = time.monotonic() + float(getattr(ns, "fuzz_drain_s", 120))
            while True:
                status = hub.status() if hub.alive else {}
                if status and status["messages"] >= count and status["in_flight"] == 0:
                    break
                if not hub.alive or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            alive = hub.alive
            status = hub.status() if alive else status
            tracebacks = hub.tracebacks()  # of the payload run only: the API fuzz has its figure
            api: dict[str, Any] = {"requests": 0, "server_errors": 0, "not_problems": 0}
            examples = int(getattr(ns, "api_examples", 5))
            if alive and examples > 0:
                token = str(hub.http.headers["Authorization"]).split()[1]
                api = fuzz_api(hub.url, token, examples=examples, seed=seed)
                for failure in api["failures"][:20]:
                    print("api failure:", *failure, file=sys.stderr)
                alive = hub.alive
        finally:
            hub.stop()
        rows, blank = dead_letter_rows(data_dir)
    taken = int(status.get("messages", 0))
    crashes = (
        int(status.get("codec_bugs", 0))
        + int(status.get("handler_errors", 0))
        + tracebacks
        + (0 if alive else 1)
    )
    figures: dict[str, float] = {
        "fuzz_payloads": float(taken),
        "fuzz_crashes": float(crashes),
        "fuzz_rejects": float(rows),
        "fuzz_rejected_messages": float(status.get("rejected_messages", 0)),
        "fuzz_unexplained": float(abs(int(status.get("dead_letters", 0)) - rows) + blank),
        "fuzz_readings_stored": float(status.get("readings_stored", 0)),
        "fuzz_lost_messages": float(count - taken),
        "fuzz_msgs_s": round(taken / max(elapsed, 1e-9), 1),
        "api_fuzz_requests": float(api["requests"]),
        "api_fuzz_server_errors": float(api["server_errors"]),
        "api_fuzz_not_problems": float(api["not_problems"]),
    }
    if getattr(ns, "fuzz_verbose", False):
        print("kinds sent:", dict(sorted(kinds.items())), file=sys.stderr)
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This part's options (``bench/faults.py`` adds them to its own)."""
    parser.add_argument("--fuzz-payloads", type=int, default=100_000, help="hostile: messages sent")
    parser.add_argument("--fuzz-seed", type=int, default=1, help="hostile: seed of the mutations")
    parser.add_argument("--fuzz-devices", type=int, default=300, help="hostile: demo city size")
    parser.add_argument(
        "--fuzz-drain-s", type=float, default=120.0, help="hostile: wait for the hub, at most"
    )
    parser.add_argument(
        "--api-examples", type=int, default=5, help="hostile: per API operation and mode; 0: none"
    )
    parser.add_argument("--fuzz-verbose", action="store_true", help="hostile: kinds sent")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser.parse_args(argv)


def main() -> None:
    for name, value in run(parse_args()).items():
        print(f"{name}={value:g}")


if __name__ == "__main__":
    main()
