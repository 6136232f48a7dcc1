"""The ``hub`` command: run the hub, run the demo, simulate sensors, import devices."""

from __future__ import annotations

import logging
import os
import threading
import time
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hub.errors import HubError
from hub.settings import HubSettings

if TYPE_CHECKING:
    from devices.profiles import Device

app = typer.Typer(help="City sensing and emergency-monitoring hub.", no_args_is_help=True)
devices_app = typer.Typer(help="Manage the device registry.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
console = Console()


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _serve(settings: HubSettings, before_shutdown: Sequence[Callable[[], None]] = ()) -> None:
    from hub.app import create_app  # noqa: PLC0415 - keep `hub --help` fast

    uvicorn.run(
        create_app(settings, before_shutdown=before_shutdown),
        host=settings.http.host,
        port=settings.http.port,
        log_level="warning",
        ws="websockets-sansio",
        # Feed frames are encoded once and shared by every screen; per-connection compression
        # would redo that work per screen (zlib on megabytes a second per screen).
        ws_per_message_deflate=False,
    )


@app.command()
def run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the hub with settings from HUB_* variables or the TOML file named by HUB_CONFIG."""
    _logging(verbose)
    settings = HubSettings()
    console.print(f"hub: http://{settings.http.host}:{settings.http.port}  (API docs at /docs)")
    try:
        _serve(settings)
    except HubError as exc:
        console.print(f"[red]hub could not start:[/red] {exc}")
        raise typer.Exit(1) from exc


def _prepare_demo(
    settings: HubSettings, devices: int, rate: float
) -> tuple[list[Device], list[tuple[str, str, str]]]:
    """Register the demo city and one account per role; returns the devices and the accounts."""
    from devices.loader import load_shipped  # noqa: PLC0415
    from devices.registry import Registry  # noqa: PLC0415
    from devices.users import UserStore  # noqa: PLC0415
    from hub.demoareas import prepare_demo_response  # noqa: PLC0415
    from hub.democity import demo_devices  # noqa: PLC0415
    from hub.demorules import tighten_offline_rules  # noqa: PLC0415
    from hub.demousers import ensure_demo_users  # noqa: PLC0415

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    city = demo_devices(devices)
    registry = Registry(settings.registry)
    load_shipped(registry)
    registry.put_devices(city)
    registry.engine.dispose()
    console.print(f"demo city: {len(city)} devices registered in {settings.registry}")
    tighten_offline_rules(settings, len(city) / rate)
    users = UserStore(settings.registry)
    accounts = ensure_demo_users(users, settings.data_dir)
    # The area tree, units and duty roster of the demo city, and its field accounts (issue 8).
    return city, accounts + prepare_demo_response(settings, city, users)


@app.command()
def demo(
    devices: Annotated[int, typer.Option(help="Simulated sensors")] = 5000,
    rate: Annotated[float, typer.Option(help="Simulated messages per second")] = 500.0,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its files")] = Path(
        "data/demo"
    ),
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the page in a browser")
    ] = True,
    storm_in: Annotated[
        float | None,
        typer.Option(help="Seconds until a rain storm hits Riverside (alerts follow); omit: none"),
    ] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the hub on its embedded defaults with simulated sensors of a demo city."""
    _logging(verbose)
    from hub.broker_auth import simulator_login  # noqa: PLC0415
    from hub.simulator import run_simulation  # noqa: PLC0415
    from hub.storm import demo_storm  # noqa: PLC0415

    started = time.monotonic()
    os.environ.setdefault("HUB_DATA_DIR", str(data_dir))
    settings = HubSettings()
    city, accounts = _prepare_demo(settings, devices, rate)
    # The simulator speaks for every demo device through its own broker account (the embedded
    # broker has auth on by default); the hub's lifespan writes that account into the broker's files.
    sim_user, sim_password = simulator_login(settings)

    stop = threading.Event()

    def simulate() -> None:
        from hub.embedded_broker import port_open  # noqa: PLC0415

        while not port_open(settings.mqtt.host, settings.mqtt.port) and not stop.is_set():
            time.sleep(0.2)
        run_simulation(
            settings.mqtt.host,
            settings.mqtt.port,
            city,
            rate,
            None,
            qos=1,
            username=sim_user,
            password=sim_password,
            stop=stop,
            scenarios=storm,
        )

    storm = [] if storm_in is None else [demo_storm(time.time() + storm_in)]
    sim = threading.Thread(target=simulate, name="simulator", daemon=True)
    sim.start()

    def stop_simulator() -> None:
        stop.set()
        sim.join(timeout=5)

    url = f"http://{settings.http.host}:{settings.http.port}/"

    def announce() -> None:
        from hub.embedded_broker import port_open  # noqa: PLC0415

        while not port_open(settings.http.host, settings.http.port) and not stop.is_set():
            time.sleep(0.2)
        console.print(
            f"[bold green]ready[/bold green] in {time.monotonic() - started:.1f} s: {url}  "
            f"(API docs {url}docs; broker mqtt://{settings.mqtt.host}:{settings.mqtt.port}; Ctrl-C stops)"
        )
        if storm:
            console.print(
                f"a rain storm hits {storm[0].district} at "
                f"{time.strftime('%H:%M:%S', time.localtime(storm[0].start))}: covers open, the river "
                f"rises, {storm[0].dark_street} goes dark; watch the alerts arrive"
            )
        table = Table(title="log in as 登录账号 (one per role)", show_edge=False)
        for column in ("user", "role", "password"):
            table.add_column(column)
        for row in accounts:
            table.add_row(*row)
        console.print(table)
        if open_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            webbrowser.open(url)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    try:
        _serve(settings, before_shutdown=[stop_simulator])
    except HubError as exc:
        console.print(f"[red]demo could not start:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        stop.set()
        sim.join(timeout=5)


@app.command()
def simulate(
    devices: Annotated[int, typer.Option(help="Demo-city sensors to simulate")] = 5000,
    rate: Annotated[float, typer.Option(help="Messages per second")] = 500.0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until Ctrl-C)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Broker host (default: hub settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Broker port (default: hub settings)")] = None,
    qos: Annotated[int, typer.Option(min=0, max=1)] = 1,
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register", help="Register the devices in the hub's registry first"
        ),
    ] = True,
) -> None:
    """Publish realistic water, traffic and urban readings from a simulated demo city."""
    from hub.broker_auth import simulator_login  # noqa: PLC0415
    from hub.democity import demo_devices  # noqa: PLC0415
    from hub.simulator import run_simulation  # noqa: PLC0415

    settings = HubSettings()
    city = demo_devices(devices)
    if register:
        from devices.loader import load_shipped  # noqa: PLC0415
        from devices.registry import Registry  # noqa: PLC0415

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        registry = Registry(settings.registry)
        load_shipped(registry)
        new = registry.put_devices(city)
        console.print(f"registered {new} new devices in {settings.registry}")
    h, p = host or settings.mqtt.host, port or settings.mqtt.port
    console.print(
        f"publishing {len(city)} devices at {rate:g} msg/s to mqtt://{h}:{p} (Ctrl-C stops)"
    )
    try:
        user, password = simulator_login(settings)  # the simulator account, if the broker has auth
        stats = run_simulation(
            h, p, city, rate, duration, qos=qos, username=user, password=password
        )
    except KeyboardInterrupt:
        return
    console.print(f"published {stats.messages} messages, {stats.readings} readings")


@devices_app.command("import")
def import_devices(
    files: Annotated[
        list[Path], typer.Argument(help="YAML, JSON or CSV files of vendors, profiles, devices")
    ],
) -> None:
    """Import vendors, profiles and devices into the registry (a running hub picks them up)."""
    from devices.errors import DeviceError  # noqa: PLC0415
    from devices.loader import import_definitions, load_shipped, read_file  # noqa: PLC0415
    from devices.registry import Registry  # noqa: PLC0415

    settings = HubSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(settings.registry)
    if not registry.profiles():
        load_shipped(registry)
    for path in files:
        try:
            defs = read_file(path)
        except (DeviceError, OSError) as exc:
            console.print(f"[red]{path}:[/red] {exc}")
            raise typer.Exit(1) from exc
        with Progress(
            TextColumn(f"{path.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("devices", total=len(defs.devices))

            def advance(done: int, task: TaskID = task) -> None:
                progress.update(task, completed=done)

            try:
                result = import_definitions(registry, defs, progress=advance)
            except DeviceError as exc:
                console.print(f"[red]{path}:[/red] {exc}")
                raise typer.Exit(1) from exc
        console.print(
            f"{path}: {result.vendors} vendors, {result.profiles} profiles, "
            f"{result.devices_new} new and {result.devices_updated} updated devices"
        )


if __name__ == "__main__":
    app()
