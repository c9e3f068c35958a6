"""The ZeroTier One local service API: this node's status and the networks it has joined.

The service listens on 127.0.0.1:9993 and takes its token in the X-ZT1-Auth header. A
self-hosted network controller runs inside the same service, under /controller, with the
same token, so `LocalService.client` serves `members.ControllerMembers` too.
"""

import logging
import os
from dataclasses import dataclass, field

from .client import ApiClient, ApiTarget
from .errors import ZeroTierError, ZeroTierNotFoundError
from .ids import validate_network_id
from .tokens import ENV_SERVICE_TOKEN_FILE, load_service_token

log = logging.getLogger(__name__)

DEFAULT_SERVICE_URL = "http://127.0.0.1:9993"
ENV_SERVICE_URL = "BAYSENSE_ZT_SERVICE_URL"
AUTH_HEADER = "X-ZT1-Auth"

SERVICE_TARGET = ApiTarget(
    name="ZeroTier local service",
    auth_hint=(
        "check the token file (--token-file or %s, else authtoken.secret): it must contain "
        "the current authtoken.secret of this service" % ENV_SERVICE_TOKEN_FILE
    ),
    forbidden_hint=(
        "the service accepts API requests only from addresses allowed by allowManagementFrom "
        "in its local.conf: run the command on that host, or allow this address there"
    ),
    not_found_hint=(
        "check the network id; for a network hosted on my.zerotier.com use --central, "
        "because this service's controller knows only the networks it created"
    ),
    unreachable_hint=(
        "check that zerotier-one is running (`systemctl status zerotier-one`) and that "
        "--service-url or %s points at it" % ENV_SERVICE_URL
    ),
)

# Values of a joined network's `status` field (ZT_VirtualNetworkStatus in ZeroTierOne.h).
STATUS_OK = "OK"
STATUS_REQUESTING_CONFIGURATION = "REQUESTING_CONFIGURATION"
STATUS_ACCESS_DENIED = "ACCESS_DENIED"
STATUS_NOT_FOUND = "NOT_FOUND"
STATUS_PORT_ERROR = "PORT_ERROR"
STATUS_CLIENT_TOO_OLD = "CLIENT_TOO_OLD"
STATUS_AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"


@dataclass(frozen=True)
class NodeStatus:
    """This node's ZeroTier address (its member id on every network) and whether it is online."""

    address: str
    online: bool
    version: str
    raw: dict = field(repr=False, compare=False)


@dataclass(frozen=True)
class JoinedNetwork:
    """One joined network as the local service reports it.

    `assigned_addresses` contains addresses with prefix length, like "10.147.17.5/24".
    """

    id: str
    name: str
    status: str
    type: str
    assigned_addresses: tuple
    raw: dict = field(repr=False, compare=False)


class LocalService:
    """Node status, joined networks, join and leave, through the local service API."""

    def __init__(self, client):
        self.client = client

    @classmethod
    def connect(cls, url=None, token_file=None, **client_options):
        """Build a LocalService from a URL (default: BAYSENSE_ZT_SERVICE_URL, then
        http://127.0.0.1:9993) and the token found as `tokens` describes."""
        url = url or os.environ.get(ENV_SERVICE_URL) or DEFAULT_SERVICE_URL
        token = load_service_token(token_file)
        client = ApiClient(url, SERVICE_TARGET, token, AUTH_HEADER, **client_options)
        return cls(client)

    def status(self):
        """Return this node's NodeStatus (GET /status)."""
        body = self.client.get("/status")
        if not isinstance(body, dict) or not isinstance(body.get("address"), str):
            raise self._unexpected("GET /status", "an object with an `address` string")
        return NodeStatus(
            address=body["address"],
            online=body.get("online") is True,
            version=str(body.get("version", "")),
            raw=body,
        )

    def networks(self):
        """Return every network this node has joined (GET /network), sorted by id."""
        body = self.client.get("/network")
        if not isinstance(body, list):
            raise self._unexpected("GET /network", "a list of networks")
        networks = [self._parse_network(item, "GET /network") for item in body]
        return sorted(networks, key=lambda network: network.id)

    def network(self, network_id):
        """Return one joined network (GET /network/{id}); raise ZeroTierNotFoundError if not joined."""
        network_id = validate_network_id(network_id)
        try:
            body = self.client.get("/network/%s" % network_id)
        except ZeroTierNotFoundError as error:
            raise ZeroTierNotFoundError(
                "this host has not joined ZeroTier network %s" % network_id,
                "run `baysense zerotier join %s`, then authorize this node on the network's controller"
                % network_id,
                status=error.status, method=error.method, path=error.path,
            ) from error
        return self._parse_network(body, "GET /network/%s" % network_id)

    def join(self, network_id):
        """Join a network (POST /network/{id}) and return its state right after the request."""
        network_id = validate_network_id(network_id)
        body = self.client.post("/network/%s" % network_id, {})
        log.info("joined ZeroTier network %s", network_id)
        return self._parse_network(body, "POST /network/%s" % network_id)

    def leave(self, network_id):
        """Leave a network (DELETE /network/{id}); raise ZeroTierNotFoundError if not joined."""
        network_id = validate_network_id(network_id)
        try:
            self.client.delete("/network/%s" % network_id)
        except ZeroTierNotFoundError as error:
            raise ZeroTierNotFoundError(
                "this host has not joined ZeroTier network %s, so it cannot leave it" % network_id,
                "`baysense zerotier networks` lists the joined networks",
                status=error.status, method=error.method, path=error.path,
            ) from error
        log.info("left ZeroTier network %s", network_id)

    def _parse_network(self, body, request):
        if not isinstance(body, dict) or not isinstance(body.get("id", body.get("nwid")), str):
            raise self._unexpected(request, "a network object with an `id` string")
        addresses = body.get("assignedAddresses") or []
        if not isinstance(addresses, list) or not all(isinstance(item, str) for item in addresses):
            raise self._unexpected(request, "`assignedAddresses` as a list of strings")
        return JoinedNetwork(
            id=body.get("id", body.get("nwid")).lower(),
            name=str(body.get("name") or ""),
            status=str(body.get("status") or ""),
            type=str(body.get("type") or ""),
            assigned_addresses=tuple(addresses),
            raw=body,
        )

    def _unexpected(self, request, expected):
        return ZeroTierError(
            "unexpected response to %s from %s: expected %s" % (request, self.client.described, expected),
            "check that --service-url points at the ZeroTier One service API",
        )
