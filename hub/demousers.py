"""The demo's people: one account per role, so a new user can see what each role sees."""

from __future__ import annotations

import json
from pathlib import Path

from devices.access import Role
from devices.users import UserStore, new_password

# (name, role, vendor): the vendor account speaks for the demo's "acme" urban-sensor vendor.
DEMO_USERS = (
    ("admin", Role.ADMIN, None),
    ("commander", Role.COMMANDER, None),
    ("officer", Role.OFFICER, None),
    ("acme", Role.VENDOR, "acme"),
    ("viewer", Role.VIEWER, None),
)


def ensure_demo_users(users: UserStore, data_dir: Path) -> list[tuple[str, str, str]]:
    """Create the demo accounts that are missing; returns (name, role, password) of each.

    Passwords are generated on first run and kept in ``data_dir/demo-users.json`` (mode 0600), so
    a second ``make demo`` prints the same ones. This is a demo convenience: a real deployment gets
    its first administrator from ``initial-admin-password`` and creates people with the API.
    """
    path = data_dir / "demo-users.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    existing = {u.name for u in users.users()}
    for name, role, vendor in DEMO_USERS:
        if name in existing and name in known:
            continue
        if name in existing:  # created elsewhere: give it a fresh password we can print
            known[name] = _reset(users, name)
            continue
        known[name] = users.create_user(name, role, vendor=vendor)
    path.touch(mode=0o600)
    path.write_text(json.dumps(known, indent=2))
    return [
        (name, role.value + (f" ({vendor})" if vendor else ""), known[name])
        for name, role, vendor in DEMO_USERS
    ]


def _reset(users: UserStore, name: str) -> str:
    password = new_password()
    users.update_user(name, password=password)
    return password
