"""A real PostgreSQL (Debian's postgresql-15) for tests, and ``db_url``: the same test on SQLite and on it.

`Postgres` runs ``initdb`` into a temp directory and the ``postgres`` server on a free 127.0.0.1
port (its socket directory is the temp directory too), and stops it by PID. PostgreSQL refuses to
run as root, so under root the server runs as the ``postgres`` system user the Debian package made.
Each test that asks for ``db_url`` with the PostgreSQL parameter gets a database of its own, created
for it and dropped (``WITH (FORCE)``, closing the store's pooled connections) after it.

Without the binaries the PostgreSQL half of each test is skipped, and the skip says why.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from hub.db import upgrade
from tests.conftest import free_port

PG_BIN = Path(os.environ.get("HUB_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "hub"  # the superuser initdb makes; trust authentication on the loopback only


class Postgres:
    """A ``postgres`` server on 127.0.0.1 with its cluster in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.log = workdir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # Root may not run PostgreSQL: hand the directory to the package's system user.
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        """Make the cluster and start the server; return once it accepts connections."""
        made = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C.UTF-8",
            ],
            check=False,
            capture_output=True,
            user=self._user,
            cwd=self.workdir,
        )
        if made.returncode != 0:
            msg = (
                f"initdb failed ({made.returncode}): {made.stderr.decode(errors='replace')[-2000:]}"
            )
            raise RuntimeError(msg)
        with self.log.open("wb") as log:
            # The server itself, not pg_ctl: Popen's PID is then the postmaster we stop.
            # fsync off: a test cluster is thrown away, durability buys nothing here.
            self.proc = subprocess.Popen(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.workdir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"postgres exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                raise RuntimeError(msg)
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=1):
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        msg = f"postgres did not accept connections in 30 s: {self.log.read_text()[-2000:]}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back and disconnect clients), by PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def dsn(self, database: str) -> str:
        """A libpq connection string for ``database``."""
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for ``database`` through psycopg 3."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and (PG_BIN / "postgres").exists()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the session (each test gets its own database in it)."""
    if not postgres_available():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15)")
    # Not under pytest's tmp_path: that sits in root's 0700 directory, which the postgres user
    # cannot enter. mkdtemp's directory is 0700 too, and handed to that user.
    workdir = Path(tempfile.mkdtemp(prefix="hub-pg-"))
    server = Postgres(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped after the test."""
    name = f"t{os.getpid()}_{next(_databases)}"
    postgres.create_database(name)
    # The stores a test opens are rarely disposed; their pooled psycopg connections would be
    # garbage-collected open later (a ResourceWarning, an error here). Close them with the test.
    # Held strongly: an engine sits in reference cycles, so a weak set lost the ones the cyclic
    # collector happened to free mid-test, and their connections warned then (a CI failure).
    engines: dict[int, sa.Engine] = {}

    def seen(conn: sa.Connection) -> None:
        engines[id(conn.engine)] = conn.engine

    sa.event.listen(sa.Engine, "engine_connect", seen)
    try:
        yield postgres.url(name)
    finally:
        sa.event.remove(sa.Engine, "engine_connect", seen)
        for engine in engines.values():
            engine.dispose()
        postgres.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database migrated to the newest revision, as the hub opens it: a SQLite file, then PostgreSQL.

    The stores' own ``create_all`` then finds every table made by the migrations, so these tests
    exercise the schema Alembic builds, not the one the models would.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    upgrade(url)
    return url
