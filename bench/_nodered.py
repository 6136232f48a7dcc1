"""The peer: Node-RED from npm (not a project dependency), running ``mqtt in -> json -> switch -> count``.

Installed once into ``~/.cache/hub-bench/node-red`` (``npm install node-red@4``; reruns reuse it) and
started with a temporary user directory, its own settings and one flow:

    mqtt in (sensors/+/+/up, QoS 1, persistent session) -> json -> switch (level > 10 m)
        over  -> count, and mqtt out bench/nodered/alerts (QoS 1): the alert path for latency
        other -> count

No storage, no live state, no screens: the least a city IT team would wire up. The switch reads the
level with a JSONata expression, because the fleet speaks two payload formats (SenML and the
gateway's JSON). ``count`` is a function node keeping count, first and last arrival time (ms) in
global context; ``GET /count`` answers them as JSON (``?reset=1`` zeroes them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from bench._broker import free_port
from bench._fleet import THRESHOLD_M

CACHE = Path(os.environ.get("HUB_BENCH_CACHE", Path.home() / ".cache" / "hub-bench")) / "node-red"
VERSION = "4"
CLIENT_ID = "bench-nodered"
ALERT_TOPIC = "bench/nodered/alerts"

_COUNT = """
let c = global.get("c");
if (!c) { c = {n: 0, first: 0, last: 0}; global.set("c", c); }
const now = Date.now();
if (c.n === 0) { c.first = now; }
c.n += 1;
c.last = now;
return null;
"""
_ANSWER = """
let c = global.get("c") || {n: 0, first: 0, last: 0};
msg.payload = {n: c.n, first: c.first, last: c.last};
if (msg.req.query.reset) { global.set("c", {n: 0, first: 0, last: 0}); }
return msg;
"""


def install() -> Path:
    """Node-RED's ``red.js``, installing it from npm into the cache the first time."""
    red = CACHE / "node_modules" / "node-red" / "red.js"
    if red.exists():
        return red
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("Node-RED needs node and npm: apt-get install nodejs npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"node-red@{VERSION}"],
        cwd=CACHE,
        check=True,
        timeout=600,
    )
    return red


def flow(broker_port: int) -> list[dict[str, object]]:
    """The flow, as Node-RED's flows.json (nodes on a tab need x and y, or they count as config)."""
    z = "bench"
    nodes: list[dict[str, object]] = [
        {"id": z, "type": "tab", "label": "bench"},
        {
            "id": "broker",
            "type": "mqtt-broker",
            "name": "bench",
            "broker": "127.0.0.1",
            "port": str(broker_port),
            "clientid": CLIENT_ID,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": False,
            "autoUnsubscribe": False,
        },
        {
            "id": "in",
            "type": "mqtt in",
            "z": z,
            "topic": "sensors/+/+/up",
            "qos": "1",
            "datatype": "utf8",
            "broker": "broker",
            "nl": False,
            "rap": True,
            "inputs": 0,
            "wires": [["json"]],
        },
        {"id": "json", "type": "json", "z": z, "property": "payload", "wires": [["switch"]]},
        {
            "id": "switch",
            "type": "switch",
            "z": z,
            "property": "$exists(payload.v) ? payload.v : payload.data.wl",
            "propertyType": "jsonata",
            "rules": [{"t": "gt", "v": str(THRESHOLD_M * 100), "vt": "num"}, {"t": "else"}],
            "checkall": "false",
            "outputs": 2,
            "wires": [["count", "out"], ["count"]],
        },
        {
            "id": "count",
            "type": "function",
            "z": z,
            "func": _COUNT,
            "outputs": 0,
            "wires": [],
        },
        {
            "id": "out",
            "type": "mqtt out",
            "z": z,
            "topic": ALERT_TOPIC,
            "qos": "1",
            "retain": "false",
            "broker": "broker",
            "wires": [],
        },
        {
            "id": "http",
            "type": "http in",
            "z": z,
            "url": "/count",
            "method": "get",
            "wires": [["answer"]],
        },
        {
            "id": "answer",
            "type": "function",
            "z": z,
            "func": _ANSWER,
            "outputs": 1,
            "wires": [["resp"]],
        },
        {"id": "resp", "type": "http response", "z": z, "wires": []},
    ]
    for k, node in enumerate(nodes):
        if "z" in node:
            node.update(x=100 + 150 * k, y=100)
    return nodes


_SETTINGS = """module.exports = {
    uiPort: %d,
    uiHost: "127.0.0.1",
    flowFile: "flows.json",
    credentialSecret: false,
    httpAdminRoot: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { tours: false },
    externalModules: { autoInstall: false },
};
"""


class NodeRed:
    """A Node-RED process on a free port with the bench flow; stopped by PID on exit."""

    def __init__(self, broker_port: int) -> None:
        self.red = install()
        self.broker_port = broker_port
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-nodered-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def __enter__(self) -> NodeRed:
        (self.dir / "flows.json").write_text(json.dumps(flow(self.broker_port)))
        (self.dir / "settings.js").write_text(_SETTINGS % self.port)
        log = (self.dir / "node-red.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "node",
                str(self.red),
                "--settings",
                str(self.dir / "settings.js"),
                "--userDir",
                str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"node-red exited: {(self.dir / 'node-red.log').read_text()[-2000:]}"
                )
            try:
                self.counts()
            except httpx.HTTPError:
                time.sleep(0.2)
            else:
                return self
        raise SystemExit("node-red did not start in 60 s")

    def counts(self, *, reset: bool = False) -> dict[str, int]:
        """Messages counted, and the first and last arrival (epoch ms)."""
        r = self.http.get("/count", params={"reset": "1"} if reset else None)
        r.raise_for_status()
        return {k: int(v) for k, v in r.json().items()}

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()
