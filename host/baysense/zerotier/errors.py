"""Errors raised by the ZeroTier clients.

Every class is a BaysenseError, so the CLI prints it as one line with its hint. None of
them ever contains an API token: messages name the URL, method and path, and any text
quoted from a response body passes through `Secret.redact` first.
"""

from ..errors import BaysenseError


class ZeroTierError(BaysenseError):
    """A ZeroTier API request or its result failed."""


class TokenError(ZeroTierError):
    """An API token is missing, unreadable, or not usable in an HTTP header."""


class ZeroTierConnectionError(ZeroTierError):
    """The API could not be reached, or it did not respond in time."""


class ZeroTierHTTPError(ZeroTierError):
    """The API responded with an error status; `status`, `method` and `path` name the request."""

    def __init__(self, message, hint=None, status=None, method=None, path=None):
        super().__init__(message, hint)
        self.status = status
        self.method = method
        self.path = path


class ZeroTierAuthError(ZeroTierHTTPError):
    """HTTP 401: the token was rejected."""


class ZeroTierForbiddenError(ZeroTierHTTPError):
    """HTTP 403: the token is valid but may not access this resource."""


class ZeroTierNotFoundError(ZeroTierHTTPError):
    """HTTP 404: the network, member or endpoint does not exist at this API."""


class ZeroTierRateLimitError(ZeroTierHTTPError):
    """HTTP 429 on every attempt, or a Retry-After longer than the client waits."""


class ZeroTierServerError(ZeroTierHTTPError):
    """HTTP 5xx on every attempt."""


class MemberNotUpdatedError(ZeroTierError):
    """A member's read-back values differ from the values sent; `mismatches` lists them."""

    def __init__(self, message, hint=None, mismatches=()):
        super().__init__(message, hint)
        self.mismatches = tuple(mismatches)


class NetworkNotReadyError(ZeroTierError):
    """This host has no usable address on a ZeroTier network yet."""
