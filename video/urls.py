"""Stream URLs: which schemes a camera may use, and their credentials kept out of sight.

A camera's URL often carries its login, in the userinfo (``rtsp://admin:secret@10.0.0.7/...``) or in
the query (``...?user=admin&password=secret``, as several vendors' HTTP snapshot and MJPEG URLs do).
The full URL is stored, since the patrol must log in; everything shown to a person, logged, or put in
an error message is the `redact`-ed form, and `scrub` takes the secrets out of text that came from
elsewhere (OpenCV and FFmpeg messages may repeat the URL they were given).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
MASK = "***"

# Query parameters that carry a secret (or a login name, which is half of one).
_SECRET_PARAMS = re.compile(
    r"^(user(name)?|login|pass(word|wd)?|pwd|token|access_token|auth|key|api_?key|secret|sig(nature)?)$",
    re.IGNORECASE,
)


def check(url: str) -> str:
    """``url`` if a camera may use it; a ValueError naming what is wrong otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        msg = f"not a URL: {exc}"
        raise ValueError(msg) from None
    if parts.scheme.lower() not in SCHEMES:
        msg = f"stream URL scheme must be one of {', '.join(SCHEMES)}"
        raise ValueError(msg)
    if parts.scheme.lower() != "file" and not parts.hostname:
        msg = "stream URL needs a host"
        raise ValueError(msg)
    if parts.scheme.lower() == "file" and not parts.path:
        msg = "file URL needs a path"
        raise ValueError(msg)
    if any(c.isspace() for c in url):
        msg = "stream URL must not contain spaces"
        raise ValueError(msg)
    return url


def secrets_of(url: str) -> list[str]:
    """The secret strings in ``url`` (user name, password, secret query values), longest first."""
    parts = urlsplit(url)
    found = [s for s in (parts.username, parts.password) if s]
    found += [unquote(s) for s in found]
    found += [
        v
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if _SECRET_PARAMS.match(k) and v
    ]
    found += [quote(v, safe="") for v in list(found)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a login."""
    return bool(secrets_of(url))


def redact(url: str) -> str:
    """``url`` with its userinfo and secret query values replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{MASK}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if _SECRET_PARAMS.match(k) and v else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def keep_stored_secrets(new: str, stored: str) -> str:
    """The URL to store when ``new`` replaces ``stored``.

    A client that echoes back the redacted URL it was shown (``***`` in place of the secrets) must
    not overwrite the real login with asterisks: if ``new`` is exactly ``stored``'s redacted form,
    the stored URL stays.
    """
    return stored if new == redact(stored) and MASK in new else new


_MIN_LOOSE_SECRET = 4  # shorter secrets are masked only where they stand in a URL


def scrub(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (and the URL itself) replaced by ``***``.

    The URL, its ``user:password@`` and its ``param=value`` secrets are masked wherever they
    appear; a secret on its own (a library quoting just the password) when it is at least four
    characters long: masking every "u" of a log line for a user named "u" would only garble it.
    """
    text = text.replace(url, redact(url))
    parts = urlsplit(url)
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        text = text.replace(userinfo + "@", MASK + "@")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_PARAMS.match(key) and value:
            for form in {value, quote(value, safe="")}:
                text = text.replace(f"{key}={form}", f"{key}={MASK}")
    for secret in secrets_of(url):
        if len(secret) >= _MIN_LOOSE_SECRET:
            text = text.replace(secret, MASK)
    return text


def capture_target(url: str) -> str:
    """What to give OpenCV: a local path for ``file:`` URLs, the URL itself otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return unquote(parts.path)
    return url
