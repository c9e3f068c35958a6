"""A JSON-over-HTTP client for ZeroTier's APIs, with retries and token-safe errors.

It is built on http.client, not urllib.request, because urllib follows redirects with
every non-body header kept (CPython 3.11, HTTPRedirectHandler.redirect_request), so an
X-ZT1-Auth or Authorization header would reach whatever host a redirect names, and it
reads proxy settings from the environment. This client follows no redirects and uses no
proxy.
"""

import email.utils
import http.client
import ipaddress
import json
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from .. import __version__
from ..errors import ConfigError
from .errors import (
    ZeroTierAuthError,
    ZeroTierConnectionError,
    ZeroTierError,
    ZeroTierForbiddenError,
    ZeroTierHTTPError,
    ZeroTierNotFoundError,
    ZeroTierRateLimitError,
    ZeroTierServerError,
)
from .tokens import check_header_safe

log = logging.getLogger(__name__)

# Per request. The local service is on loopback, so a request that takes this long has failed.
REQUEST_TIMEOUT_S = 10.0
# One try and three retries ride out a restart of zerotier-one or a short Central outage
# without holding a provisioning run for more than about 4 s of backoff.
MAX_ATTEMPTS = 4
# Backoff before retry n is BACKOFF_BASE_S * 2**(n-1), capped, when no Retry-After is given.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
# Central's rate limits are per second; a server asking for a longer wait is reported
# instead of silently holding the command.
MAX_RETRY_AFTER_S = 60.0
# A Central member list of a few thousand members is well under this.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Characters of a response body quoted in an error message.
MAX_QUOTED_BODY_CHARS = 200


@dataclass(frozen=True)
class ApiTarget:
    """The name of one ZeroTier API and what to check for each error status it returns."""

    name: str
    auth_hint: str
    forbidden_hint: str
    not_found_hint: str
    unreachable_hint: str


def parse_base_url(base_url, https_required=False):
    """Split an API base URL into (scheme, host, port, path prefix), or raise ConfigError.

    With `https_required`, plain http is accepted only for a loopback host, so a token
    never crosses a network in clear text (tests point the client at a loopback fake).
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "invalid API URL %r" % (base_url,),
            "give an http:// or https:// URL with a host, for example http://127.0.0.1:9993",
        )
    if parts.username is not None or parts.password is not None:
        # The value is not echoed: the user-info part may itself be a secret.
        raise ConfigError(
            "API URL for host %s contains a user name or password" % parts.hostname,
            "remove the user:password@ part; tokens are read from a token file or the environment",
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            "API URL %s://%s%s has a query or fragment" % (parts.scheme, parts.netloc, parts.path),
            "give only scheme, host, port and path; tokens never go into URLs",
        )
    if https_required and parts.scheme != "https" and not is_loopback(parts.hostname):
        raise ConfigError(
            "API URL %r uses plain http to a host that is not loopback" % (base_url,),
            "use https:// so the API token is encrypted in transit",
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("invalid port in API URL %r" % (base_url,), "give a port from 1 to 65535") from None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


def is_loopback(hostname):
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def parse_retry_after(value, now=None):
    """Return the wait in seconds that a Retry-After header requests, or None if unusable.

    The header is either a number of seconds or an HTTP date (RFC 9110, section 10.2.3).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt):
    """Return the wait in seconds before retry number `attempt` (1 for the first retry)."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))


class ApiClient:
    """Sends JSON requests to one ZeroTier API and returns the decoded JSON responses.

    `auth_header` names the header that carries the token, and `auth_format` builds its
    value (for Central, "token %s"). A request that returns 429 or 5xx is sent up to
    MAX_ATTEMPTS times in all. Every request this package sends is idempotent, so a
    retried POST is safe. `sleep` exists so tests can record waits instead of waiting.
    """

    def __init__(
        self,
        base_url,
        target,
        token,
        auth_header,
        auth_format="%s",
        https_required=False,
        timeout_s=REQUEST_TIMEOUT_S,
        max_attempts=MAX_ATTEMPTS,
        sleep=time.sleep,
    ):
        self.scheme, self.host, self.port, self.prefix = parse_base_url(base_url, https_required)
        # http.client's own check would quote the whole header value, token included.
        check_header_safe(token.reveal(), "API token for %s" % target.name)
        self.base_url = base_url.rstrip("/")
        self.target = target
        self._token = token
        self._auth_header = auth_header
        self._auth_format = auth_format
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self._sleep = sleep

    def __repr__(self):
        return "ApiClient(%r, %r)" % (self.base_url, self.target.name)

    @property
    def described(self):
        return "%s at %s" % (self.target.name, self.base_url)

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body):
        return self.request("POST", path, body)

    def delete(self, path):
        return self.request("DELETE", path)

    def request(self, method, path, body=None):
        """Send one request, retrying 429 and 5xx, and return the decoded JSON (None if empty)."""
        payload = None if body is None else json.dumps(body).encode("utf-8")

        attempt = 1
        while True:
            started = time.monotonic()
            status, headers, data = self._send(method, path, payload)
            log.debug(
                "%s %s%s -> HTTP %d in %.0f ms", method, self.base_url, path, status,
                (time.monotonic() - started) * 1000,
            )

            if 200 <= status < 300:
                return self._decode(method, path, data)

            delay = self._retry_delay(method, path, status, headers, attempt)
            if delay is None:
                raise self._status_error(method, path, status, data, attempt)
            log.warning(
                "%s returned HTTP %d for %s %s; retrying in %.1f s (attempt %d of %d)",
                self.described, status, method, path, delay, attempt + 1, self.max_attempts,
            )
            self._sleep(delay)
            attempt += 1

    def _send(self, method, path, payload):
        headers = {
            self._auth_header: self._auth_format % self._token.reveal(),
            "Accept": "application/json",
            "User-Agent": "baysense/%s" % __version__,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"

        if self.scheme == "https":
            connection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

        try:
            connection.request(method, self.prefix + path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_RESPONSE_BYTES + 1)
            return response.status, response.headers, data
        except TimeoutError:
            raise ZeroTierConnectionError(
                "%s did not respond to %s %s within %g s" % (self.described, method, path, self.timeout_s),
                self.target.unreachable_hint,
            ) from None
        except ConnectionRefusedError:
            raise ZeroTierConnectionError(
                "cannot connect to %s (connection refused)" % self.described,
                self.target.unreachable_hint,
            ) from None
        except (OSError, http.client.HTTPException) as error:
            # These messages describe the socket or the response line, not the request
            # headers, and the token is masked in them all the same.
            raise ZeroTierConnectionError(
                "request %s %s to %s failed (%s: %s)"
                % (method, path, self.described, type(error).__name__, self._token.redact(str(error))),
                self.target.unreachable_hint,
            ) from None
        finally:
            connection.close()

    def _decode(self, method, path, data):
        if len(data) > MAX_RESPONSE_BYTES:
            raise ZeroTierError(
                "response to %s %s from %s is larger than %d bytes" % (method, path, self.described, MAX_RESPONSE_BYTES),
                "check the API URL: this is not a ZeroTier API response",
            )
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ZeroTierError(
                "response to %s %s from %s is not JSON: %s" % (method, path, self.described, self._quote(data)),
                "check the API URL: it should point at a ZeroTier API",
            ) from None

    def _retry_delay(self, method, path, status, headers, attempt):
        """Return the wait before the next attempt, or None when this status is final."""
        if status != 429 and not 500 <= status < 600:
            return None
        if attempt >= self.max_attempts:
            return None
        if status == 429:
            requested = parse_retry_after(headers.get("Retry-After"))
            if requested is not None:
                if requested > MAX_RETRY_AFTER_S:
                    raise ZeroTierRateLimitError(
                        "%s rate-limited %s %s and asks to retry after %.0f s" % (self.described, method, path, requested),
                        "that is longer than this client waits (%.0f s): run the command again later"
                        % MAX_RETRY_AFTER_S,
                        status=status, method=method, path=path,
                    )
                return requested
        return backoff_delay(attempt)

    def _status_error(self, method, path, status, data, attempts):
        request = "%s %s" % (method, path)
        quoted = self._quote(data)
        detail = ": %s" % quoted if quoted else ""
        fields = dict(status=status, method=method, path=path)

        if status == 401:
            return ZeroTierAuthError(
                "%s rejected the API token (HTTP 401 for %s)" % (self.described, request),
                self.target.auth_hint, **fields,
            )
        if status == 403:
            return ZeroTierForbiddenError(
                "%s denied access (HTTP 403 for %s)%s" % (self.described, request, detail),
                self.target.forbidden_hint, **fields,
            )
        if status == 404:
            return ZeroTierNotFoundError(
                "%s has no %s (HTTP 404 for %s)" % (self.described, path, request),
                self.target.not_found_hint, **fields,
            )
        if status == 429:
            return ZeroTierRateLimitError(
                "%s kept rate-limiting %s (HTTP 429 on %d attempts)" % (self.described, request, attempts),
                "wait a minute and run the command again",
                **fields,
            )
        if 500 <= status < 600:
            return ZeroTierServerError(
                "%s failed with HTTP %d for %s on %d attempts%s" % (self.described, status, request, attempts, detail),
                "try again later; for the local service, check `systemctl status zerotier-one`",
                **fields,
            )
        return ZeroTierHTTPError(
            "%s returned HTTP %d for %s%s" % (self.described, status, request, detail),
            "check the network and member ids and the values sent",
            **fields,
        )

    def _quote(self, data):
        """Return the start of a response body for an error message, with the token masked."""
        # Mask before cutting, so a cut cannot leave part of the token unmasked.
        text = self._token.redact(data.decode("utf-8", "replace"))
        text = " ".join(text.split())
        if len(text) > MAX_QUOTED_BODY_CHARS:
            text = text[:MAX_QUOTED_BODY_CHARS] + "..."
        return text
