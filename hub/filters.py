"""Filter parameters name things: a value that cannot be a name is refused (422), not searched for.

Areas, devices, vendors, metrics, rules, types, categories: everything a list can be filtered by is an
identifier the hub or a person gave, made of letters (any script: 福田区), digits, spaces and a few
separators. Store queries bind their parameters, so ``' OR 1=1 --`` could never widen a query; but
answering it with an empty list tells a caller nothing, and ``%`` or ``*`` would reach a LIKE or a
regular expression as a wildcard. Refusing such a value says what was wrong, for every route at once
(a dependency of the whole app), with the same problem body as any other invalid query.
"""

from __future__ import annotations

import re

from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection

# The query parameters that filter by a name. Times, limits and formats are typed by their routes.
NAME_FILTERS = frozenset(
    {
        "area",
        "category",
        "department",
        "device",
        "kind",
        "level",
        "metric",
        "rule",
        "source",
        "subject",
        "type",
        "user",
        "vendor",
    }
)
# \w is Unicode: letters and digits of any script, and "_".
NAME = re.compile(r"[\w\-./:~@, ]{1,300}")
ALLOWED = "letters, digits, spaces and - _ . / : ~ @ ,"


def check_name_filters(connection: HTTPConnection) -> None:
    """Refuse a request whose name filters hold anything but a name (an app-wide dependency).

    Raises:
        RequestValidationError: one error per refused parameter (the app answers 422).
    """
    if connection.scope["type"] != "http":
        return
    errors = [
        {
            "type": "value_error",
            "loc": ("query", name),
            "msg": f"{value[:80]!r} is not a name ({ALLOWED}; at most 300)",
            "input": value,
        }
        for name, value in connection.query_params.multi_items()
        if name in NAME_FILTERS and not NAME.fullmatch(value)
    ]
    if errors:
        raise RequestValidationError(errors)
