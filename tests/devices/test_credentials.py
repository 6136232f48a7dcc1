"""Device credentials on a SQLite file: issue, rotate, revoke; only hashes stored; fast in bulk."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.credentials import (
    DEVICE_ITERATIONS,
    PASSWORD_ITERATIONS,
    CredentialStore,
    Pbkdf2Hash,
    hash_secret,
    username_for,
    verify_secret,
)
from devices.errors import InvalidDefinitionError, NotFoundError

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


class Clock:
    """Epoch milliseconds that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1_795_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def url(db_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL (tests/postgres.py), migrated by Alembic."""
    return db_url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(url: str, clock: Clock) -> Iterator[CredentialStore]:
    s = CredentialStore(url, clock=clock)
    yield s
    s.dispose()


def test_issue_gives_a_vendor_scoped_username_and_a_secret_stored_only_as_a_hash(
    store: CredentialStore, tmp_path: Path, clock: Clock
) -> None:
    issued = store.issue("bin-00001", "acme")
    assert issued.username == "acme/bin-00001"
    assert len(issued.secret) == 32  # 24 random bytes, URL-safe base64
    assert issued.secret not in repr(issued)
    device_id, username, secret = issued  # routes unpack it
    assert (device_id, username, secret) == ("bin-00001", "acme/bin-00001", issued.secret)

    assert store.verify("acme/bin-00001", issued.secret)
    assert not store.verify("acme/bin-00001", issued.secret + "x")
    status = store.get("bin-00001")
    assert status.active
    assert (status.issued_at_ms, status.rotated_at_ms, status.revoked_at_ms) == (
        clock.now,
        None,
        None,
    )
    (active,) = store.all_active()
    assert active.password_hash.startswith(f"$7${DEVICE_ITERATIONS}$")
    assert issued.secret not in repr(active)

    store.dispose()
    for f in tmp_path.glob("hub.db*"):  # the database and its WAL
        assert issued.secret.encode() not in f.read_bytes(), f"secret in clear in {f.name}"


def test_rotation_replaces_the_secret_and_keeps_the_first_issue_time(
    store: CredentialStore, clock: Clock
) -> None:
    first = store.issue("bin-00001", "acme")
    issued_at = clock.now
    clock.now += 60_000
    second = store.issue("bin-00001", "acme")
    assert second.secret != first.secret
    assert not store.verify(first.username, first.secret)
    assert store.verify(second.username, second.secret)
    status = store.get("bin-00001")
    assert (status.issued_at_ms, status.rotated_at_ms) == (issued_at, clock.now)


def test_revocation_drops_the_hash_and_issuing_again_makes_the_device_usable(
    store: CredentialStore, clock: Clock
) -> None:
    issued = store.issue("bin-00001", "acme")
    store.issue("bin-00002", "acme")
    clock.now += 1000
    assert store.revoke("bin-00001") is True
    assert store.revoke("bin-00001") is False  # already revoked: nothing changes
    assert store.get("bin-00001").revoked_at_ms == clock.now
    assert not store.get("bin-00001").active
    assert not store.verify(issued.username, issued.secret)
    assert [c.device_id for c in store.all_active()] == ["bin-00002"]

    again = store.issue("bin-00001", "acme")
    assert store.get("bin-00001").active
    assert store.verify(again.username, again.secret)
    assert not store.verify(issued.username, issued.secret)


def test_unknown_devices_have_no_credential(store: CredentialStore) -> None:
    assert store.revoke("nobody") is False  # decommissioning a device without one is fine
    with pytest.raises(NotFoundError):
        store.get("nobody")
    assert not store.verify("acme/nobody", "anything")


def test_usernames_are_unambiguous_and_safe_in_mosquitto_files() -> None:
    # ':' splits a Mosquitto password line, so it is written '~', which no id may contain.
    assert username_for("hydrox", "urn:dev:mac:0024befffe804ff1") == (
        "hydrox/urn~dev~mac~0024befffe804ff1"
    )
    for vendor, device in [
        ("acme", "a/b"),
        ("ac me", "x"),
        ("acme", "+"),
        ("acme", "#"),
        ("", "x"),
    ]:
        with pytest.raises(InvalidDefinitionError):
            username_for(vendor, device)


def test_a_bad_id_in_a_bulk_issue_writes_nothing(store: CredentialStore) -> None:
    with pytest.raises(InvalidDefinitionError):
        store.issue_many([("bin-00001", "acme"), ("bad/id", "acme")])
    assert store.all_active() == []


def test_generation_tells_another_process_that_credentials_changed(url: str) -> None:
    hub = CredentialStore(url)
    cli = CredentialStore(url)  # e.g. an import in another process
    before = hub.generation()
    cli.issue("bin-00001", "acme")
    after_issue = hub.generation()
    assert after_issue != before
    cli.revoke("bin-00001")
    assert hub.generation() != after_issue
    unchanged = hub.generation()
    cli.revoke("bin-00001")  # no change, no new generation
    assert hub.generation() == unchanged
    hub.dispose()
    cli.dispose()


def test_hashes_are_the_ones_mosquitto_passwd_writes_and_reads(tmp_path: Path) -> None:
    # Mosquitto's own tool writes a hash we verify...
    passwd = tmp_path / "passwd"
    subprocess.run(
        [MOSQUITTO_PASSWD, "-c", "-b", str(passwd), "acme/bin-00001", "s3cret-from-a-person"],
        check=True,
        capture_output=True,
    )
    _, theirs = passwd.read_text().strip().split(":", 1)
    assert Pbkdf2Hash.parse(theirs).iterations == PASSWORD_ITERATIONS
    assert verify_secret("s3cret-from-a-person", theirs)
    assert not verify_secret("s3cret-from-a-person!", theirs)
    # ...and ours has the same shape (12-byte salt, 64-byte digest); the broker tests log in with it.
    ours = Pbkdf2Hash.parse(hash_secret("x"))
    assert (len(ours.salt), len(ours.digest), ours.iterations) == (12, 64, DEVICE_ITERATIONS)
    assert not verify_secret("x", "not a hash")


@pytest.mark.slow
def test_issuing_100000_credentials_at_once_gives_100000_working_ones(
    store: CredentialStore,
) -> None:
    # How fast is bench/onboarding.py's business (31-36k/s measured there); this test holds the
    # bulk path to being right at bulk-import size, and prints its rate for whoever runs it.
    pairs = [(f"bin-{i:06d}", "acme") for i in range(100_000)]
    started = time.perf_counter()
    issued = store.issue_many(pairs)
    elapsed = time.perf_counter() - started
    rate = len(issued) / elapsed
    print(f"issue_many: {len(issued)} credentials in {elapsed:.2f} s = {rate:,.0f}/s")
    assert len(issued) == 100_000
    assert len({i.secret for i in issued}) == 100_000
    assert store.verify(issued[-1].username, issued[-1].secret)
