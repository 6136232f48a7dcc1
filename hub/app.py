"""The hub's FastAPI application: components built in the lifespan, domain routers mounted, errors as RFC 9457."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

import sqlalchemy.exc
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts import api as alerts_api
from alerts import citizen_reports_api, rules_api
from alerts.errors import AlertError
from alerts.lifecycle import Alert, AlertChange
from alerts.notify import AlertFeed, Notifications
from alerts.rulebook import RuleBook
from alerts.silences import SilenceStore
from alerts.store import AlertStore
from devices import api as devices_api
from devices import auth_api, manage_api
from devices.access import AuthError, ForbiddenError, Role, StaffOnly
from devices.credentials import CredentialStore
from devices.device_auth import DeviceAuthError
from devices.errors import ConflictError, DeviceError, InvalidDefinitionError, NotFoundError
from devices.loader import load_shipped
from devices.login_limit import SharedLoginLimiter, TooManyAttemptsError
from devices.partitions import Slot
from devices.registry import Registry
from devices.users import UserStore
from hub import areas_api, feed_api, health_api, metrics_api, screen_api
from hub.alerting import Alerting
from hub.broker_auth import BrokerAuthSync, managed_broker_auth
from hub.camera_commands import CheckForwarder, CheckServer
from hub.camera_relay import CameraRelay
from hub.db import upgrade as upgrade_schema
from hub.device_flags import flag_events
from hub.embedded_broker import EmbeddedBroker
from hub.feed import CameraSource, SituationFeed
from hub.feed_reports import FeedWithReports
from hub.filters import check_name_filters
from hub.influx_sink import InfluxSink
from hub.limits import BodyLimit
from hub.live import HubLiveView
from hub.memory import settle_collector
from hub.metrics import HubMetrics, HubProbe, TimedStore, camera_source, feed_source, timed_rules
from hub.relay import CameraRow, LiveSink, StatePublisher, StateRelay
from hub.reports_wiring import ReportsWiring
from hub.response_wiring import ROUTERS as RESPONSE_ROUTERS
from hub.response_wiring import ResponseWiring
from hub.roles import PassiveAlerting, RolePlan, Starter, side_client_id, side_transport
from hub.settings import HubSettings
from hub.singleton_jobs import SingletonJobs, lease_taker
from hub.slots import alert_owner, cluster_slot, slot_client_id, slot_file
from hub.state import LiveState
from hub.store_alarm import StoreAlarm
from hub.stores import open_store
from hub.supervise import TaskWatch
from hub.video_wiring import VideoWiring
from ingest import api as ingest_api
from ingest import codecs, uplink_api
from ingest.api import BadQueryError
from ingest.batch import ReadingBatch
from ingest.consumer import Consumer, DecodeOptions, StatusChange
from ingest.deadletter import DeadLetterStore
from ingest.decodepool import PooledConsumer, in_process
from ingest.errors import IngestError
from ingest.flags import DeviceFlag
from ingest.http_uplink import HttpUplink
from ingest.mqtt import MqttOptions, MqttTransport
from ingest.pipeline import IngestPipeline
from ingest.ratelimit import RateLimits
from ingest.sl651.server import Sl651Server
from ingest.spool import Spool
from ingest.store.influx import InfluxStore
from video import api as video_api

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


def _problem(status: int, title: str, detail: str, request: Request, **extra: Any) -> JSONResponse:  # noqa: ANN401
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as RFC 9457 problem details; routers raise domain errors, not HTTPException."""

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return _problem(404, f"{exc.kind.capitalize()} not found", str(exc), request)

    @app.exception_handler(InvalidDefinitionError)
    async def _invalid(request: Request, exc: InvalidDefinitionError) -> JSONResponse:
        return _problem(422, "Invalid definition", str(exc), request)

    @app.exception_handler(AuthError)
    async def _unauthenticated(request: Request, exc: AuthError) -> JSONResponse:
        response = _problem(401, "Not logged in", str(exc), request)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(DeviceAuthError)
    async def _device_unauthenticated(request: Request, exc: DeviceAuthError) -> JSONResponse:
        response = _problem(401, "Device not authenticated", str(exc), request)
        response.headers["WWW-Authenticate"] = 'Basic realm="hub devices"'
        return response

    @app.exception_handler(TooManyAttemptsError)
    async def _too_many(request: Request, exc: TooManyAttemptsError) -> JSONResponse:
        response = _problem(
            429, "Too many failed logins", str(exc), request, retry_after_s=exc.retry_after_s
        )
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError) -> JSONResponse:
        return _problem(403, "Forbidden", str(exc), request)

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return _problem(409, "Conflict", str(exc), request)

    @app.exception_handler(BadQueryError)
    async def _bad_query(request: Request, exc: BadQueryError) -> JSONResponse:
        return _problem(400, "Bad query", str(exc), request)

    @app.exception_handler(AlertError)
    async def _alert(request: Request, exc: AlertError) -> JSONResponse:
        return _problem(exc.status, exc.title, str(exc), request, **exc.problem_extra())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
        return _problem(422, "Invalid request", detail, request, errors=errors)

    @app.exception_handler(OverflowError)
    @app.exception_handler(sqlalchemy.exc.DataError)
    async def _overflow(request: Request, exc: Exception) -> JSONResponse:
        # A number in the request past what the database stores (an id or offset of 2**70): SQLite's
        # driver refuses to bind it (OverflowError), PostgreSQL answers "integer out of range"
        # (DataError). A request error, not a server one (found by tests/fuzz).
        logger.info("request %s: value out of range: %s", request.url.path, exc)
        detail = "a value in the request is too large (or otherwise unfit) for the database"
        return _problem(422, "Invalid request", detail, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), str(exc.detail), request)

    @app.exception_handler(DeviceError)
    @app.exception_handler(IngestError)
    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("request %s failed: %s", request.url.path, exc)
        return _problem(500, "Internal error", "the hub could not complete the request", request)


def _check_codec(codec: dict[str, Any]) -> None:
    """Validate a profile's codec block with the ingest package's codec registry."""
    try:
        codecs.build(codec)
    except codecs.CodecConfigError as exc:
        raise ValueError(str(exc)) from exc


def _nobody(_alert: Alert) -> bool:
    return False


def _unexpected(topic: str, _payload: bytes, _mid: int, _qos: int) -> None:
    logger.warning("message on %s, which this process does not subscribe to", topic)


class Components:
    """Everything the running hub holds, built in the lifespan and closed after it."""

    def __init__(  # noqa: PLR0915 - one line per component: the list is the wiring
        self, settings: HubSettings, cameras: CameraSource | None = None
    ) -> None:
        """Open the registry, stores and live state (and start the embedded broker if configured)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        # all | ingest | api | video: which of the components below run (hub/roles.py).
        self.plan = RolePlan(settings.cluster.role)
        mq = settings.mqtt
        # Every store's tables, at the newest migration, before any store opens (hub/db.py).
        upgrade_schema(settings.registry)
        # The registry opens before the broker: with auth, the broker's accounts come from it.
        self.registry = Registry(settings.registry)
        if not self.registry.profiles():
            load_shipped(self.registry)
        self.broker: EmbeddedBroker | None = None
        if mq.embedded:
            self.broker = EmbeddedBroker(
                settings.data_dir / "broker", mq.host, mq.port, mq.mosquitto_bin, auth=mq.auth
            )
        # Issued by the device routes; written into the broker's files when the hub manages them.
        self.credentials = CredentialStore(settings.registry)
        self.broker_auth: BrokerAuthSync | None = None
        login = (mq.username, mq.password.get_secret_value() if mq.password else None)
        managed = managed_broker_auth(settings, self.registry, self.credentials, self.broker)
        if managed is not None:
            self.broker_auth, accounts = managed
            self.broker_auth.sync(reload=False)  # before the broker starts: it reads the files then
            login = (accounts.hub.username, accounts.hub.password)
        if self.broker is not None:
            self.broker.start()
        self.metrics = HubMetrics()
        self.store = open_store(settings, self.registry)
        self.dead_letters = DeadLetterStore(settings.registry)
        self.users = UserStore(settings.registry)
        self._bootstrap_admin()
        self.state = LiveState(
            self.registry.interner.device_count, self.registry.interner.metric_count
        )
        self.state.apply(self.store.latest())
        self.live = HubLiveView(self.registry, self.state, self.dead_letters)
        ing = settings.ingest
        local = Consumer(
            self.registry,
            DecodeOptions(
                site_zone=ing.site_zone,
                max_payload=ing.max_payload_bytes,
                skew_flag_ms=int(ing.skew_flag_s * 1000),
                max_future_ms=int(ing.max_future_s * 1000),
                slot=self.slot,
            ),
        )
        consumer: Consumer | PooledConsumer = local
        if ing.decode_workers and self.plan.ingests:
            consumer = PooledConsumer(local, workers=ing.decode_workers)
        self.pipeline = IngestPipeline(
            self.registry,
            TimedStore(self.store, self.metrics.store_write.observe),
            self.dead_letters,
            MqttOptions(
                host=mq.host,
                port=mq.port,
                client_id=slot_client_id(mq.client_id, self.slot),
                username=login[0],
                password=login[1],
                receive_maximum=mq.receive_maximum,
                tls_ca=str(mq.tls_ca_file) if mq.tls_ca_file else None,
                tls_cert=str(mq.tls_certfile) if mq.tls_certfile else None,
                tls_key=str(mq.tls_keyfile) if mq.tls_keyfile else None,
            ),
            consumer=consumer,
            slot=self.slot,
            flush_interval=ing.flush_interval_s,
            write_interval=ing.store_write_interval_s,
            # A store outage goes to the spool (acknowledged, the hub keeps watching) until it is
            # full; then acknowledgements are held back and the broker keeps the rest.
            spool=self._spool(),
            # Live state, the situation feed (right after the state its snapshots read: it only
            # queues) and the rule engine see each batch while it is written, not after: an alert
            # or a screen should not wait for the disk.
            on_received=[self._to_state, self._to_feed],
            on_status=[self._status_to_state, self._status_to_feed],
            # A device flooding far above its profile's rate is cut back and flagged; a clock hours
            # off is flagged (ingest/ratelimit.py, ingest/skew.py); both become alerts.
            rate_limits=(
                RateLimits(ing.rate_limit_factor, ing.rate_limit_window_intervals)
                if ing.rate_limit_factor > 0
                else None
            ),
            skew_behind_ms=int(ing.skew_behind_s * 1000),
            skew_confirm_ms=int(ing.skew_confirm_s * 1000),
            on_flags=[self._flags_to_alerts],
        )
        # Hydrological stations (SL 651-2014 over TCP): their readings join the pipeline's flushes.
        self.sl651 = Sl651Server(
            settings.sl651,
            self.registry,
            self.pipeline.submit,
            site_zone=ing.site_zone,
            skew_flag_ms=int(ing.skew_flag_s * 1000),
            max_future_ms=int(ing.max_future_s * 1000),
        )
        # Alert changes fan out to MQTT (hub/alerts/{level}/{id}), webhooks, the people's
        # notifications (grouped, silenced, escalated) and, later, the websocket feed.
        feed = AlertFeed()
        # The MQTT session this process publishes on: the ingest pipeline's, or (api, video) a clean
        # one of its own, which on an api node also takes the ingest workers' relay (hub/relay.py).
        self.relay: StateRelay | None = None
        # An api node: each ingest worker's rule evaluation errors, as it last published them.
        self.worker_rule_failures: dict[str, dict[str, int]] = {}
        # Camera checks forwarded from api nodes to the video node (made with the side link).
        self.check_forwarder: CheckForwarder | None = None
        self.check_server: CheckServer | None = None
        self.mqtt_link = self.pipeline.transport if self.plan.ingests else self._side_link(feed)
        self.alerts = AlertStore(
            settings.registry,
            policy=settings.alert_policy,
            on_change=feed.publish,
            vendor_of=self._vendor_of,
        )
        self.silences = SilenceStore(settings.registry)
        self.notifications = Notifications(
            settings.notify,
            feed=feed,
            publisher=self.mqtt_link,
            store=self.alerts,
            silences=self.silences,
            # api and video nodes group, repeat and escalate nothing: the ingest workers do.
            mine=alert_owner(self.slot) if self.plan.ingests else _nobody,
        )
        self.notifications.start()
        # The rule engine reads every stored batch and the clock; its condition events become alerts.
        self.rule_book = RuleBook(
            settings.registry, paths=settings.rules.paths, shipped=settings.rules.shipped
        )
        # api and video nodes evaluate no readings: an engine that holds nothing (hub/roles.py).
        self.alerting = (Alerting if self.plan.ingests else PassiveAlerting)(
            self.registry,
            self.rule_book,
            self.alerts,
            settings.data_dir / slot_file(settings.rules.state_file, self.slot),
            tick_s=settings.rules.tick_s,
            save_s=settings.rules.save_s,
            slot=self.slot,
        )
        self.pipeline.add_received_handler(
            timed_rules(self.alerting, self.metrics.rule_evaluation.observe)
        )
        # The store failing, spooling or blocking is an alert like any other (hub/store_alarm.py).
        self.pipeline.add_store_watcher(StoreAlarm(self.alerting, self.alerts))
        # The websocket situation feed: readings and statuses come through the hooks above.
        self.feed = SituationFeed(settings.feed, self.registry, self.state, self.alerts, cameras)
        self._live_out(feed)
        # Cameras: registry and patrol; confirmed findings go to the alert path like the engine's.
        self.video = VideoWiring(settings, self.registry, self.alerts, self.alerting)
        # Camera standing across nodes: the video node publishes it, api nodes show it live, and
        # no other role opens a stream (hub/camera_relay.py).
        self.camera_relay = CameraRelay.wire(
            self.plan,
            self.video,
            self.feed.on_camera,
            lambda: self.mqtt_link,
            settings.cluster.worker,
            forwarder=self.check_forwarder,
        )
        # Incidents, units, warnings, duty roster and the area tree (issue 8).
        self.response = ResponseWiring(
            settings,
            self.registry,
            self.store,
            self.alerts,
            feed,
            self.alerting.emit,
            self.video.fleet,
        )
        self._more_ways_in()
        # In a cluster one api node at a time ticks incidents, warnings, duty notices and report
        # clusters: the holder of the jobs lease (hub/singleton_jobs.py).
        self.jobs = self._singleton_jobs()
        self._feed_sources(cameras)
        self.influx_sink = self._observe(settings.store.influx.stats_interval_s, feed)
        self.started = time.time()

    @property
    def slot(self) -> Slot | None:
        """This process's ingest worker slot (None: the only worker).

        A slot decodes, stores and watches only its devices (devices/partitions.py); its broker
        session and rule state are its own.
        """
        return cluster_slot(self.settings)

    def _side_link(self, feed: AlertFeed) -> MqttTransport:
        """An api or video process's clean MQTT session (hub/roles.py); an api node's relay rides it.

        It also carries forwarded camera checks (hub/camera_commands.py): an api node's requests
        and their replies, and the video node's side of them.
        """
        subscriptions: list[tuple[str, int]] = []
        options = self.pipeline.transport.options
        if self.plan.role == "api":
            self.check_forwarder = CheckForwarder(
                lambda: self.mqtt_link,
                side_client_id(options.client_id, self.plan.role),
                timeout_s=self.settings.video.forward_timeout_s,
            )
            subscriptions += self.check_forwarder.subscriptions()
        elif self.plan.role == "video":
            self.check_server = CheckServer(
                lambda: self.mqtt_link,
                # self.video is made after this link: looked up when a request comes
                lambda camera_id: self.video.patrol.check_now(camera_id),  # noqa: PLW0108
            )
            subscriptions += self.check_server.subscriptions()
        if self.plan.relays_in:
            # The relay's frames go through the hooks the pipeline would give its batches.
            self.relay = StateRelay(
                on_batch=[self._to_state, self._to_feed],
                on_status=[self._status_to_state, self._status_to_feed],
                on_alert=self._remote_alert,
                vendor_of=self._vendor_of,
                alerts_prefix=self.settings.notify.mqtt_prefix,
                on_resync=self._reread_latest,
                on_cameras=[self._cameras_in],
                on_rules=self.worker_rule_failures.__setitem__,
            )
            subscriptions += self.relay.subscriptions()
            feed.subscribe(self.relay.local_change)  # its own changes' echo is dropped
        relayed = self.relay.handle if self.relay is not None else _unexpected
        forwarder, server = self.check_forwarder, self.check_server

        def on_message(topic: str, payload: bytes, mid: int, qos: int) -> None:
            if forwarder is not None and forwarder.wants(topic):
                forwarder.handle(payload)
            elif server is not None and server.wants(topic):
                server.handle(payload)
            else:
                relayed(topic, payload, mid, qos)  # acknowledges itself
                return
            link.ack(mid, qos)

        link = side_transport(options, self.plan.role, subscriptions, on_message)
        if self.relay is not None:
            self.relay.attach(link)
        link.start()
        return link

    async def _reread_latest(self) -> None:
        """An api node back on the broker: what it missed, from the store to its state and screens."""
        latest = await asyncio.to_thread(self.store.latest)
        await self._to_state(latest)
        await self._to_feed(latest)
        if self.camera_relay.intake is not None:
            await self.camera_relay.intake.resync()

    def rule_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """By rule: sources whose condition holds now, and evaluation errors (the rules' views).

        A process that evaluates readings counts its own engine's. An api node's engine watches
        nothing: it counts the firing alerts in the shared store (one per condition held by any
        worker) and adds up the errors the ingest workers publish (hub/relay.py, retained).
        """
        if not isinstance(self.alerting, PassiveAlerting):
            return rules_api.engine_counts(self.alerting.engine)
        active: dict[str, int] = {}
        for alert in self.alerts.active_alerts():
            if alert.firing:
                active[alert.rule] = active.get(alert.rule, 0) + 1
        failures = dict(self.alerting.engine.failures)
        for worker in list(self.worker_rule_failures.values()):
            for rule, n in worker.items():
                failures[rule] = failures.get(rule, 0) + n
        return active, failures

    def _remote_alert(self, change: AlertChange) -> None:
        """An alert change another process committed (an api node's relay): screens and duty."""
        self.feed.on_alert(change)
        self.response.to_duty(change)

    def _singleton_jobs(self) -> SingletonJobs | None:
        """An api node's jobs lease and the ticks it runs; who queues duty notices."""
        if not self.plan.runs("jobs.singleton"):
            if not self.plan.runs("response.tick"):  # ingest, video: no tick would ever send them
                self.response.duty_wanted = lambda: False
            return None
        duty = self.response.service.duty
        jobs = SingletonJobs(
            lease_taker(self.settings.registry),
            {"response.tick": self.response.run, "reports.tick": self.reports.run},
            # What a holder that died had not told yet: the changes since it last could have.
            on_taken=lambda: duty.adopt(window_s=3 * SingletonJobs.POLL_S + 5),
        )
        self.response.duty_wanted = lambda: jobs.held
        self.response.duty_standby = lambda: not jobs.held
        return jobs

    async def _cameras_in(self, rows: Sequence[CameraRow]) -> None:
        if self.camera_relay.intake is not None:
            await self.camera_relay.intake.apply(rows)

    def _live_out(self, feed: AlertFeed) -> None:
        """Where live changes go: this process's own screens, or (an ingest worker) the relay."""
        self.live_sink: LiveSink = self.feed
        self.alert_link: MqttTransport | None = None
        if self.plan.relays_out:
            self.live_sink = StatePublisher(
                lambda: self.pipeline.transport,
                self.settings.cluster.worker,
                rule_failures=lambda: self.alerting.engine.failures,
            )
            self.alert_link = self._foreign_alerts(feed)
        if self.plan.screens:
            feed.subscribe(self.feed.on_alert)

    def _foreign_alerts(self, feed: AlertFeed) -> MqttTransport:
        """An ingest worker's watch of alert changes other processes commit (hub/relay.py).

        People act on api nodes: without their acknowledgements, resolutions and closes this
        worker's notification router would go on reminding of alerts nobody needs reminding of.
        """
        mine = alert_owner(self.slot)

        def observe(change: AlertChange) -> None:
            if mine is None or mine(change.alert):
                self.notifications.people.observe(change)

        self.relay = StateRelay(
            on_batch=(),
            on_status=(),
            on_alert=observe,
            vendor_of=self._vendor_of,
            alerts_prefix=self.settings.notify.mqtt_prefix,
        )
        feed.subscribe(self.relay.local_change)  # its own changes the router has seen already
        link = side_transport(
            self.pipeline.transport.options,
            self.plan.role,
            self.relay.subscriptions(state=False),
            self.relay.handle,
        )
        self.relay.attach(link)
        link.start()
        return link

    def _more_ways_in(self) -> None:
        """Issue 11's ways in beside MQTT: HTTP uplinks and citizens' reports."""
        # Devices that POST instead of publishing: decoded and stored through the same pipeline.
        self.uplink = HttpUplink(self.pipeline)
        # Citizens' reports: linked to alerts and each other, correlated with sensors.
        self.reports = ReportsWiring(
            self.settings, self.registry, self.alerts, self.alerting.emit, self.response.tree
        )

    def _feed_sources(self, cameras: CameraSource | None) -> None:
        """The situation feed's cameras (the video fleet's unless given) and response objects."""
        if cameras is None:
            self.feed.use_cameras(self.video.feed_source)
        # Incidents, units and warnings ride the situation feed too (issue 8, item 6).
        self.feed.use_response(FeedWithReports(self.response.service, self.reports.feed))

    def _observe(self, stats_interval_s: float, feed: AlertFeed) -> InfluxSink | None:
        """Self-metrics for /metrics; with InfluxDB, the same figures and every alert change there."""
        self.probe = self.metrics.attach(
            HubProbe(self.registry, self.pipeline, self.alerting, self.dead_letters)
        )
        self.probe.add_source(feed_source(self.feed))
        self.probe.add_source(camera_source(self.video.patrol))
        if not isinstance(self.store, InfluxStore):
            return None
        sink = InfluxSink(self.store, self.probe, interval_s=stats_interval_s)
        feed.subscribe(sink.on_alert)
        return sink

    def _spool(self) -> Spool | None:
        """The store-outage spool (``store.spool`` in data_dir), or None when turned off."""
        st = self.settings.store
        if st.spool is None:
            return None
        return Spool(self.settings.data_dir / st.spool, int(st.spool_max_mb * 1024 * 1024))

    def _vendor_of(self, device_id: str) -> str | None:
        entry = self.registry.interner.devices.get(device_id)
        return entry.vendor if entry is not None else None

    def _bootstrap_admin(self) -> None:
        """A fresh hub has one administrator, whose generated password waits in a 0600 file."""
        if self.users.users():
            return
        password = self.users.create_user("admin", Role.ADMIN)
        path = self.settings.data_dir / "initial-admin-password"
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        logger.warning(
            "created user 'admin'; its password is in %s: log in and change it", path.resolve()
        )

    async def _to_state(self, batch: ReadingBatch) -> None:
        self.state.apply(batch)
        self.state.seen(self.alerting.engine.heard_via(batch.device), batch.ts)

    async def _status_to_state(self, statuses: Sequence[StatusChange]) -> None:
        devices = self.registry.interner.devices
        for s in statuses:
            entry = devices.get(s.device_id)
            if entry is not None and entry.vendor == s.vendor:
                self.state.mark_online(entry.index, s.online, s.ts_ms)

    async def _to_feed(self, batch: ReadingBatch) -> None:
        await self.live_sink.on_batch(batch)

    async def _flags_to_alerts(self, flags: Sequence[DeviceFlag]) -> None:
        self.alerting.emit(flag_events(flags, self.registry))

    async def _status_to_feed(self, statuses: Sequence[StatusChange]) -> None:
        await self.live_sink.on_status(statuses)

    async def retention(self) -> None:
        """Delete readings past the retention period, hourly."""
        keep_ms = int(self.settings.store.retention_days * 86_400_000)
        while True:
            cutoff = int(time.time() * 1000) - keep_ms
            deleted = await asyncio.to_thread(self.store.delete_before, cutoff)
            if deleted:
                logger.info(
                    "retention deleted %s readings older than %s days",
                    deleted,
                    self.settings.store.retention_days,
                )
            await asyncio.sleep(3600)

    async def watch_registry(self) -> None:
        """Pick up devices, profiles and rules that another process added or edited.

        ``hub devices import``, and in a cluster the other nodes (a rule edited on an api node is in
        force on the ingest workers within one pass: the edit tables are shared).
        """
        while True:
            await asyncio.sleep(5)
            try:
                if await asyncio.to_thread(self.registry.refresh):
                    logger.info("registry changed: %s devices", len(self.registry.interner.devices))
                if await asyncio.to_thread(self.rule_book.refresh):
                    logger.info("rules changed elsewhere: %s rules", len(self.rule_book.rules()))
            except Exception:
                logger.exception("registry refresh failed")

    async def write_rate_letters(self) -> None:
        """The rate limiter's owed dead letters, every few seconds even when no batch comes."""
        limiter = self.pipeline.limiter
        if limiter is None:
            return
        while True:
            await asyncio.sleep(limiter.limits.letter_every_ms / 2000)
            letters = limiter.letters_due(time.time_ns() // 1_000_000)  # on the loop, as apply
            if letters:
                self.pipeline.consumer.counters.dead_letters += len(letters)
                await asyncio.to_thread(self.dead_letters.write, letters)

    async def keep_broker_auth(self) -> None:
        """Regenerate the broker's accounts within a second of a credential or registry change."""
        if self.broker_auth is None:
            return
        while True:
            await asyncio.sleep(1)
            try:
                await asyncio.to_thread(self.broker_auth.sync_if_changed)
            except Exception:
                logger.exception("updating the broker's accounts failed")

    def close(self) -> None:
        """Close stores and stop the embedded broker."""
        if self.pipeline.limiter is not None:  # what the limiter cut since its last letters
            self.dead_letters.write(self.pipeline.limiter.letters(time.time_ns() // 1_000_000))
        if self.mqtt_link is not self.pipeline.transport:
            self.mqtt_link.stop()  # an api or video node's own session (the pipeline stops its own)
        if isinstance(self.pipeline.consumer, PooledConsumer):
            self.pipeline.consumer.close()
        if self.alert_link is not None:
            self.alert_link.stop()
        self.video.close()
        self.reports.close()
        self.response.close()
        self.alerting.close()
        self.rule_book.dispose()
        self.notifications.stop()
        self.alerts.dispose()
        self.silences.dispose()
        self.store.close()
        self.credentials.dispose()
        if self.broker is not None:
            self.broker.stop()


def create_app(  # noqa: PLR0915 - one line per component and router: the list is the wiring
    settings: HubSettings | None = None,
    *,
    before_shutdown: Sequence[Callable[[], None]] = (),
    cameras: CameraSource | None = None,
    on_task_failure: Callable[[str], None] | None = None,
    tune_gc: bool = False,
) -> FastAPI:
    """The hub's ASGI app; components start with the app's lifespan.

    ``tune_gc``: once started, freeze what start-up built and collect young objects less often
    (`hub.memory.settle_collector`). Only for a process that runs one hub for its whole life
    (``hub run``): frozen objects are never collected, so a process that starts hub after hub (the
    test suite) would keep every stopped hub's cycles, sockets and files alive.
    ``before_shutdown`` runs first when the app stops, while the broker is still up (the demo stops
    its simulator there, so it does not see the broker vanish under it). ``cameras`` feeds the
    situation feed's cameras (none by default). ``on_task_failure(reason)`` is called when one of
    the hub's tasks fails (hub/supervise.py); by default the process sends itself SIGTERM.
    """
    settings = settings or HubSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        components = await asyncio.to_thread(Components, settings, cameras)
        app.state.components = components
        app.state.registry = components.registry
        app.state.store = components.store
        app.state.dead_letters = components.dead_letters
        app.state.live = components.live
        app.state.users = components.users
        # Failed logins counted in the database: every api node of a cluster counts the same ones.
        app.state.login_limiter = SharedLoginLimiter(components.users.engine)
        app.state.alert_store = components.alerts
        app.state.silence_store = components.silences
        app.state.rule_book = components.rule_book
        app.state.rule_engine = components.alerting.engine
        app.state.rule_counts = components.rule_counts
        app.state.authenticator = components.users
        app.state.credentials = components.credentials
        app.state.codec_check = _check_codec
        # The decode preview's sandbox: an in-process consumer with the live one's settings.
        app.state.consumer = in_process(components.pipeline.consumer)
        app.state.metrics = components.metrics
        app.state.uplink = components.uplink
        components.video.install(app)
        components.response.install(app)
        components.reports.install(app)
        if tune_gc:  # hub/memory.py: full collections under load stalled every task 36-160 ms
            settle_collector()
        starters: dict[str, Starter] = {
            "ingest.pipeline": components.pipeline.run,
            "store.retention": components.retention,
            "registry.watch": components.watch_registry,
            "broker.auth": components.keep_broker_auth,
            "ingest.rate_letters": components.write_rate_letters,
            "alerts.notify": components.notifications.run,
            "alerts.engine": components.alerting.run,
            "feed.situation": components.feed.run,
            "video.patrol": components.video.run,
            "response.tick": components.response.run,
            "reports.tick": components.reports.run,
        }
        if settings.sl651.enabled:
            starters["ingest.sl651"] = components.sl651.run
        if components.influx_sink is not None:
            starters["influx.sink"] = components.influx_sink.run
        if components.relay is not None:
            starters["relay.state"] = components.relay.run
        if components.jobs is not None:
            starters["jobs.singleton"] = components.jobs.run
        if components.camera_relay.publisher is not None:
            starters["relay.cameras"] = components.camera_relay.publisher.run
        if components.check_server is not None:
            starters["video.commands"] = components.check_server.run
        # The role picks which run (hub/roles.py); ``all`` runs every one, as one process always did.
        tasks = [
            asyncio.create_task(start(), name=name)
            for name, start in components.plan.pick(starters)
        ]
        # One that fails stops the hub (``on_task_failure``: `hub run` stops its server and exits
        # non-zero; else SIGTERM to ourselves, uvicorn's graceful stop), see hub/supervise.py.
        app.state.task_watch = watch = TaskWatch(
            on_task_failure or (lambda _why: signal.raise_signal(signal.SIGTERM))
        )
        watch.watch(tasks)
        try:
            yield
        finally:
            watch.stopping()
            for hook in before_shutdown:
                await asyncio.to_thread(hook)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(components.close)

    app = FastAPI(
        title="City hub",
        version="0.1.0",
        description="City sensing and emergency-monitoring hub: devices, readings, rejects.",
        lifespan=lifespan,
        # A filter by area, device, vendor... that cannot be a name gets a 422 (hub/filters.py).
        dependencies=[Depends(check_name_filters)],
    )
    _install_problem_handlers(app)
    # Ingest and video nodes serve no screens: no /ws/situation, no command screen (hub/roles.py).
    # Nor do api and video nodes take HTTP uplinks: they run no pipeline to store them (route
    # /api/v1/uplink to the ingest workers).
    plan = RolePlan(settings.cluster.role)
    # Outermost: a body over its limit, or JSON nested past any real document, is refused unread.
    app.add_middleware(BodyLimit)
    app.include_router(auth_api.router)
    app.include_router(devices_api.router)
    app.include_router(manage_api.router)
    app.include_router(ingest_api.router)
    if plan.ingests:
        app.include_router(uplink_api.router)
    app.include_router(health_api.router)
    app.include_router(areas_api.router)
    if plan.screens:
        app.include_router(screen_api.router)
    app.include_router(alerts_api.router)
    app.include_router(alerts_api.silences_router)
    app.include_router(rules_api.router)
    if plan.screens:
        app.include_router(feed_api.router)
    app.include_router(video_api.router)
    app.include_router(metrics_api.router)
    app.include_router(citizen_reports_api.router)
    for response_router in RESPONSE_ROUTERS:
        app.include_router(response_router)

    @app.get("/healthz", tags=["health"], summary="Is the hub up (for load balancers; no login)")
    def healthz(request: Request) -> dict[str, Any]:
        c: Components = request.app.state.components
        connected = c.mqtt_link.connected.is_set()
        return {"status": "ok" if connected else "degraded", "broker_connected": connected}

    @app.get("/api/v1/status", tags=["health"], summary="What the ingest pipeline has done")
    def status(request: Request, _: StaffOnly) -> dict[str, Any]:
        c: Components = request.app.state.components
        p = c.pipeline
        counters = p.consumer.counters
        connected = c.mqtt_link.connected.is_set()
        return {
            "status": "ok" if connected else "degraded",
            "broker_connected": connected,
            "uptime_s": round(time.time() - c.started, 1),
            "devices": len(c.registry.interner.devices),
            "messages": counters.messages,
            "readings_decoded": counters.readings,
            "readings_stored": p.stats.stored,
            "duplicates_skipped": p.stats.duplicates,
            "dead_letters": counters.dead_letters,
            "rate_limited": p.stats.rate_limited,
            "clock_skewed": p.stats.clock_skewed,
            "rejected_messages": counters.rejected_messages,
            # One ingest worker of several: messages of the other workers' devices, left to them.
            "foreign_messages": counters.foreign,
            # Both stay 0 unless the hub has a bug: a codec raised something other than its
            # rejection, or a live handler (state, feed, rules) failed on a batch.
            "codec_bugs": counters.codec_bugs,
            "handler_errors": p.stats.handler_errors,
            "in_flight": p.consumer.pending,
            "store_errors": p.stats.store_errors,
            "store_failing": bool(p.store_health and p.store_health.failing),
            "store_blocked": bool(p.store_health and p.store_health.blocked),
            "spooled": p.stats.spooled,
            "spool_readings": p.spool.readings if p.spool is not None else 0,
            "last_write_ms": round(p.stats.last_write_ms, 2),
            "alerts": {
                "rules": len(c.alerting.engine.rules),
                "rule_failures": sum(c.alerting.engine.failures.values()),
                **asdict(c.alerting.stats),
            },
            # Hydrological stations over TCP (ingest/sl651): frames, confirmations, rejects.
            "sl651": {"enabled": settings.sl651.enabled, **asdict(c.sl651.counters)},
            # Devices that POST (POST /api/v1/uplink/...): requests, readings, refusals, timeouts.
            "http_uplink": asdict(c.uplink.counters),
            # Issue 12: this process's role; what its relay took in (an api node: state frames and
            # alert changes; an ingest worker: alert changes other processes committed).
            "role": c.plan.role,
            "relay": c.relay.status() if c.relay is not None else None,
            # An api node: whether it holds the jobs lease (runs the ticks) or stands by.
            "jobs": c.jobs.status() if c.jobs is not None else None,
        }

    if plan.screens:
        static = resources.files("hub") / "static"
        app.mount("/", StaticFiles(directory=str(static), html=True), name="static")
    return app
