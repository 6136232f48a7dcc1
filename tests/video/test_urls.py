"""Stream URLs: what is accepted, and the login never shown."""

from __future__ import annotations

import pytest

from video import urls

SECRET_URLS = [
    (
        "rtsp://admin:s3cr%40t@10.0.0.7:554/Streaming/Channels/101",
        "rtsp://***:***@10.0.0.7:554/Streaming/Channels/101",
    ),
    ("rtsp://viewer@cam.example/live", "rtsp://***@cam.example/live"),
    (
        "http://10.1.1.1/video.cgi?user=admin&password=hunter2&res=hd",
        "http://10.1.1.1/video.cgi?user=***&password=***&res=hd",
    ),
    ("https://cam.example/mjpg?token=abc123", "https://cam.example/mjpg?token=***"),
    ("rtsp://10.0.0.8/live", "rtsp://10.0.0.8/live"),
]


@pytest.mark.parametrize(("url", "shown"), SECRET_URLS)
def test_redact(url: str, shown: str) -> None:
    assert urls.redact(url) == shown
    assert urls.has_credentials(url) == (url != shown)


def test_scrub_takes_every_form_of_the_secret_out_of_text() -> None:
    url = "rtsp://admin:s3cr%40t@10.0.0.7/live"
    text = f"[rtsp @ 0x1] could not open {url}; password s3cr@t or s3cr%40t refused for admin"
    scrubbed = urls.scrub(text, url)
    assert "s3cr" not in scrubbed
    assert "admin" not in scrubbed
    assert "rtsp://***:***@10.0.0.7/live" in scrubbed


def test_a_redacted_url_sent_back_keeps_the_stored_login() -> None:
    stored = "rtsp://admin:pw@10.0.0.7/live"
    assert urls.keep_stored_secrets(urls.redact(stored), stored) == stored
    assert (
        urls.keep_stored_secrets("rtsp://other:pw2@10.0.0.7/live", stored)
        == "rtsp://other:pw2@10.0.0.7/live"
    )
    assert urls.keep_stored_secrets("rtsp://10.0.0.9/live", stored) == "rtsp://10.0.0.9/live"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://cam/x", "scheme"),
        ("rtsp:///live", "host"),
        ("file://", "path"),
        ("rtsp://cam/a b", "spaces"),
    ],
)
def test_check_refuses(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        urls.check(url)


def test_capture_target() -> None:
    assert urls.capture_target("file:///data/clip%201.mp4") == "/data/clip 1.mp4"
    assert urls.capture_target("rtsp://cam/live") == "rtsp://cam/live"


def test_scrub_masks_short_secrets_only_where_they_stand_in_the_url() -> None:
    url = "rtsp://u:pw@127.0.0.1:9/live?user=u&token=ab"
    text = f"Connection to tcp://127.0.0.1:9?timeout=0 failed for u:pw@127.0.0.1 ({url}) token=ab"
    assert urls.scrub(text, url) == (
        "Connection to tcp://127.0.0.1:9?timeout=0 failed for ***@127.0.0.1 "
        "(rtsp://***:***@127.0.0.1:9/live?user=***&token=***) token=***"
    )
