"""The ZeroTier HTTP client against the loopback fakes: retries, errors, token secrecy."""

import logging
import socket
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from baysense.errors import BaysenseError, ConfigError
from baysense.zerotier import client as zt_client
from baysense.zerotier.client import ApiClient, parse_base_url, parse_retry_after
from baysense.zerotier.errors import (
    TokenError,
    ZeroTierAuthError,
    ZeroTierConnectionError,
    ZeroTierError,
    ZeroTierForbiddenError,
    ZeroTierHTTPError,
    ZeroTierNotFoundError,
    ZeroTierRateLimitError,
    ZeroTierServerError,
)
from baysense.zerotier.fake import FakeZeroTierOne
from baysense.zerotier.members import CENTRAL_TARGET
from baysense.zerotier.service import AUTH_HEADER, SERVICE_TARGET
from baysense.zerotier.tokens import Secret

TOKEN = "zt1tokenNEVERshown42xyz"
NETWORK = "8056c2e21c000001"


@pytest.fixture
def service():
    with FakeZeroTierOne(TOKEN) as fake:
        yield fake


@pytest.fixture
def waits():
    return []


def make_client(url, waits, token=TOKEN, **options):
    return ApiClient(url, SERVICE_TARGET, Secret(token), AUTH_HEADER, sleep=waits.append, **options)


def assert_token_hidden(error, caplog):
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error)
    assert TOKEN not in (error.hint or "")
    assert TOKEN not in caplog.text


def test_get_sends_token_in_header_only(service, waits):
    body = make_client(service.url, waits).get("/status")
    assert body["address"] == service.node_id

    request = service.requests_to("/status")[0]
    assert request.headers["X-ZT1-Auth"] == TOKEN
    assert TOKEN not in request.path
    assert waits == []


def test_post_sends_json_body(service, waits):
    make_client(service.url, waits).post("/network/%s" % NETWORK, {"allowManaged": True})
    request = service.requests_to("/network/%s" % NETWORK)[0]
    assert request.method == "POST"
    assert request.body == {"allowManaged": True}
    assert request.headers["Content-Type"] == "application/json"


def test_wrong_token_gives_auth_error(service, waits, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(service.url, waits, token="wrongtoken123")
    with pytest.raises(ZeroTierAuthError) as caught:
        client.get("/status")
    error = caught.value
    assert error.status == 401
    assert "token file" in error.hint
    assert "wrongtoken123" not in str(error)
    assert "wrongtoken123" not in caplog.text
    assert waits == []


def test_forbidden_gives_forbidden_error(service, waits):
    service.forbidden_networks.add(NETWORK)
    with pytest.raises(ZeroTierForbiddenError) as caught:
        make_client(service.url, waits).get("/network/%s" % NETWORK)
    assert caught.value.status == 403
    assert "allowManagementFrom" in caught.value.hint


def test_not_found_gives_not_found_error(service, waits):
    with pytest.raises(ZeroTierNotFoundError) as caught:
        make_client(service.url, waits).get("/network/%s" % NETWORK)
    assert caught.value.status == 404
    assert NETWORK in str(caught.value)
    assert isinstance(caught.value, BaysenseError)


def test_429_waits_for_retry_after_seconds(service, waits, caplog):
    service.fail_next(429, times=2, retry_after=3)
    body = make_client(service.url, waits).get("/status")
    assert body["address"] == service.node_id
    assert waits == [3.0, 3.0]
    assert len(service.requests_to("/status")) == 3
    assert "retrying in 3.0 s" in caplog.text


def test_429_without_retry_after_backs_off(service, waits):
    service.fail_next(429, times=3)
    make_client(service.url, waits).get("/status")
    assert waits == [zt_client.backoff_delay(1), zt_client.backoff_delay(2), zt_client.backoff_delay(3)]
    assert waits == sorted(waits)


def test_429_every_attempt_gives_rate_limit_error(service, waits):
    service.fail_next(429, times=zt_client.MAX_ATTEMPTS, retry_after=1)
    with pytest.raises(ZeroTierRateLimitError) as caught:
        make_client(service.url, waits).get("/status")
    assert caught.value.status == 429
    assert len(waits) == zt_client.MAX_ATTEMPTS - 1
    assert len(service.requests) == zt_client.MAX_ATTEMPTS


def test_429_with_long_retry_after_fails_at_once(service, waits):
    service.fail_next(429, retry_after=int(zt_client.MAX_RETRY_AFTER_S) + 1)
    with pytest.raises(ZeroTierRateLimitError) as caught:
        make_client(service.url, waits).get("/status")
    assert "retry after 61 s" in str(caught.value)
    assert waits == []
    assert len(service.requests) == 1


def test_500_then_success_retries(service, waits):
    service.fail_next(500)
    service.fail_next(503)
    body = make_client(service.url, waits).get("/status")
    assert body["online"] is True
    assert waits == [zt_client.backoff_delay(1), zt_client.backoff_delay(2)]


def test_500_every_attempt_gives_server_error(service, waits, caplog):
    caplog.set_level(logging.DEBUG)
    service.fail_next(500, times=zt_client.MAX_ATTEMPTS, body={"message": "boom with %s inside" % TOKEN})
    with pytest.raises(ZeroTierServerError) as caught:
        make_client(service.url, waits).get("/status")
    error = caught.value
    assert error.status == 500
    assert "on %d attempts" % zt_client.MAX_ATTEMPTS in str(error)
    assert "boom with *** inside" in str(error)
    assert len(service.requests) == zt_client.MAX_ATTEMPTS
    assert_token_hidden(error, caplog)


def test_400_is_not_retried(service, waits):
    service.fail_next(400, body={"message": "body JSON is invalid"})
    with pytest.raises(ZeroTierHTTPError) as caught:
        make_client(service.url, waits).get("/status")
    assert caught.value.status == 400
    assert "body JSON is invalid" in str(caught.value)
    assert waits == []


def test_redirect_is_not_followed(service, waits):
    service.fail_next(302, body={"message": "moved"})
    with pytest.raises(ZeroTierHTTPError) as caught:
        make_client(service.url, waits).get("/status")
    assert caught.value.status == 302
    assert len(service.requests) == 1


def test_backoff_is_bounded():
    delays = [zt_client.backoff_delay(attempt) for attempt in range(1, 20)]
    assert max(delays) == zt_client.BACKOFF_MAX_S
    assert delays[0] == zt_client.BACKOFF_BASE_S


def test_connection_refused_names_service(waits):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ZeroTierConnectionError) as caught:
        make_client("http://127.0.0.1:%d" % port, waits).get("/status")
    assert "connection refused" in str(caught.value)
    assert "zerotier-one is running" in caught.value.hint
    assert waits == []


def test_silent_server_times_out(waits):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = "http://127.0.0.1:%d" % listener.getsockname()[1]
        with pytest.raises(ZeroTierConnectionError) as caught:
            make_client(url, waits, timeout_s=0.2).get("/status")
    assert "did not respond" in str(caught.value)
    assert "within 0.2 s" in str(caught.value)
    assert waits == []


def test_token_with_line_break_rejected_before_sending(service, waits):
    with pytest.raises(TokenError) as caught:
        make_client(service.url, waits, token="abc\r\nX-Injected: 1")
    assert "X-Injected" not in str(caught.value)
    assert service.requests == []


def test_response_that_is_not_json(waits):
    class HtmlHandler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = b"<html>a web page</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        with pytest.raises(ZeroTierError, match="not JSON"):
            make_client("http://127.0.0.1:%d" % server.server_address[1], waits).get("/status")
    finally:
        server.shutdown()
        server.server_close()


def test_client_repr_hides_token(service, waits):
    client = make_client(service.url, waits)
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(vars(client))


@pytest.mark.parametrize("value, expected", [("5", 5.0), ("0", 0.0), (" 12 ", 12.0), ("soon", None), (None, None), ("-3", None)])
def test_parse_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(header, now=now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0


def test_parse_base_url_parts():
    assert parse_base_url("http://127.0.0.1:9993") == ("http", "127.0.0.1", 9993, "")
    assert parse_base_url("https://api.zerotier.com/api/v1/") == ("https", "api.zerotier.com", 443, "/api/v1")


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:9993", "http://", "http://host:99999"])
def test_parse_base_url_rejects_malformed(url):
    with pytest.raises(ConfigError):
        parse_base_url(url)


def test_parse_base_url_rejects_user_info_without_echo():
    with pytest.raises(ConfigError) as caught:
        parse_base_url("https://user:hunter2pass@api.zerotier.com/api/v1")
    assert "hunter2pass" not in str(caught.value)
    assert "api.zerotier.com" in str(caught.value)


def test_parse_base_url_rejects_query():
    with pytest.raises(ConfigError, match="query"):
        parse_base_url("http://127.0.0.1:9993/?auth=x")


def test_plain_http_to_remote_central_rejected():
    with pytest.raises(ConfigError, match="plain http"):
        ApiClient("http://api.zerotier.com/api/v1", CENTRAL_TARGET, Secret(TOKEN), "Authorization", https_required=True)
    ApiClient("http://127.0.0.1:8080/api/v1", CENTRAL_TARGET, Secret(TOKEN), "Authorization", https_required=True)
