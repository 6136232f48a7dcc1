"""Onboarding benchmark: a vendor uploads 100,000 devices in one bulk request over HTTP.

Method. A real hub (uvicorn, FastAPI, SQLite registry, its own Mosquitto) in this process; a vendor
logs in and POSTs a JSON upload of N rows to /api/v1/devices/bulk; the clock runs from the request to
the response, which holds every new device's MQTT credential. The baseline, in the same run, is what
the database itself does with the same rows: one SQLAlchemy executemany INSERT into an empty table
of the same shape, with no validation, no credentials and no HTTP.

Prints name=value lines: bulk_import_rows_s, bulk_import_baseline_rows_s, bulk_import_ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import BenchBroker, free_port
from devices.access import Role
from devices.loader import load_shipped
from devices.registry import Registry, devices_table
from devices.users import UserStore
from hub.app import create_app
from hub.settings import HttpSettings, HubSettings, MqttSettings


def rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"ob-{i:07d}",
            "profile": "acme-bin",
            "name": f"bin {i}",
            "lat": 30.2 + (i % 1000) / 1e4,
            "lon": 120.1 + (i // 1000) / 1e4,
            "area": f"hz/d{i % 9}/s{i % 97}/g{i % 1013}",
            "tags": {"batch": "bench"},
        }
        for i in range(n)
    ]


def baseline(path: Path, data: list[dict[str, object]]) -> float:
    """Rows per second the database takes the same rows in one executemany, nothing else."""
    engine = sa.create_engine(f"sqlite:///{path}")
    meta = sa.MetaData()
    table = devices_table.to_metadata(meta)
    meta.create_all(engine)
    plain = [
        {**r, "vendor": "acme", "idx": i, "type": "bin_fill", "status": "active"}
        for i, r in enumerate(data)
    ]
    t = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.insert(table), plain)
    elapsed = time.perf_counter() - t
    engine.dispose()
    return len(data) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    args = parser.parse_args()
    data = rows(args.devices)
    with tempfile.TemporaryDirectory(prefix="bench-onboarding-") as tmp, BenchBroker() as broker:
        base = baseline(Path(tmp) / "baseline.db", data)
        settings = HubSettings(
            data_dir=Path(tmp) / "hub",
            mqtt=MqttSettings(embedded=False, port=broker.port),
            http=HttpSettings(port=free_port()),
        )
        settings.data_dir.mkdir()
        registry = Registry(settings.registry)
        load_shipped(registry)
        registry.engine.dispose()
        UserStore(settings.registry).create_user(
            "acme-bench", Role.VENDOR, vendor="acme", password="bench password"
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=settings.http.port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{settings.http.port}"
        try:
            with httpx.Client(base_url=url, timeout=600) as http:
                token = http.post(
                    "/api/v1/auth/login",
                    json={"username": "acme-bench", "password": "bench password"},
                ).json()["access_token"]
                upload = json.dumps(data).encode()  # the vendor's file, made before the clock
                t = time.perf_counter()
                r = http.post(
                    "/api/v1/devices/bulk",
                    content=upload,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                elapsed = time.perf_counter() - t
                r.raise_for_status()
                result = r.json()
        finally:
            server.should_exit = True
            thread.join(30)
    if result["created"] != args.devices or len(result["credentials"]) != args.devices:
        raise SystemExit(f"bulk import created {result['created']} of {args.devices}")
    rate = args.devices / elapsed
    print(f"bulk_import_rows_s={rate:.0f}")
    print(f"bulk_import_baseline_rows_s={base:.0f}")
    print(f"bulk_import_ratio={rate / base:.3f}")
    print(
        f"# {args.devices} devices with credentials in {elapsed:.1f} s over HTTP; "
        f"plain executemany {args.devices / base:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
