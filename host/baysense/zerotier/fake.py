"""Loopback fakes of ZeroTier's HTTP APIs, for tests and demos without ZeroTier.

`FakeZeroTierOne` serves the local service API (/status, /network) and a self-hosted
controller (/controller/network/...) on one port with one token in X-ZT1-Auth, as
zerotier-one does. `FakeCentral` serves Central's network and member endpoints under
/api/v1 with `Authorization: token ...`. Both listen on 127.0.0.1 on a free port unless
start() is given another address; `baysense zerotier fake` (fake_cli.py) runs one.

Their behaviour follows ZeroTier's API documentation and ZeroTier One's controller source:
- a missing or wrong token gives 401, a network in `forbidden_networks` 403, and an
  unknown network or member 404;
- the controller converts a member value of the wrong type as ZeroTier One's
  OSUtils::jsonBool and jsonString do. A string starting with t, T or 1 becomes true and
  any other string false, and a number becomes its decimal string. It keeps no
  `description`;
- Central ignores a member value of the wrong type and keeps the old one;
- both create a member on POST when its network exists.
NOTE: Central's handling of a POST for a member that never joined is assumed, not checked.

`fail_next(status, times, retry_after)` makes the next requests fail on purpose, and
`ignored_member_fields` makes a fake drop fields silently. Every request is recorded in
`requests`, headers included, so tests can check what was sent.
"""

import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

NETWORK_PATH = re.compile(r"/network/([^/]+)")
CONTROLLER_NETWORK_PATH = re.compile(r"/controller/network/([^/]+)")
CONTROLLER_MEMBER_PATH = re.compile(r"/controller/network/([^/]+)/member/([^/]+)")
CENTRAL_NETWORK_PATH = re.compile(r"/api/v1/network/([^/]+)")
CENTRAL_MEMBER_PATH = re.compile(r"/api/v1/network/([^/]+)/member/([^/]+)")
HEX16 = re.compile(r"[0-9a-f]{16}")

DEFAULT_NODE_ID = "1a2b3c4d5e"
# How often the server loop checks for shutdown; the default 0.5 s would add that much to
# every test that stops a fake.
SHUTDOWN_POLL_INTERVAL_S = 0.02
FAKE_VERSION = "1.14.2"


@dataclass
class RecordedRequest:
    """One request as the fake received it; `body` is the decoded JSON, or None."""

    method: str
    path: str
    headers: dict
    body: object


class FakeHttpApi:
    """The HTTP server, token check, fault injection and request log shared by the fakes."""

    base_path = ""

    def __init__(self, token):
        self.token = token
        self.requests = []
        self.forbidden_networks = set()
        self.ignored_member_fields = set()
        self._failures = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def start(self, host="127.0.0.1", port=0):
        """Listen on host:port (port 0: a free one) and serve in a background thread; return self."""
        self._server = ThreadingHTTPServer((host, port), make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_INTERVAL_S},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return "http://%s:%d%s" % (self._server.server_address[0], self.port, self.base_path)

    def fail_next(self, status, times=1, retry_after=None, body=None):
        """Respond to the next `times` requests with `status` (and a Retry-After header if given)."""
        with self._lock:
            for _ in range(times):
                self._failures.append((status, retry_after, body))

    def dispatch(self, method, path, headers, raw_body):
        """Return (status, JSON body or None, extra headers) for one request."""
        with self._lock:
            body = None
            if raw_body:
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    body = raw_body.decode("utf-8", "replace")
            self.requests.append(RecordedRequest(method, path, dict(headers), body))

            if self._failures:
                status, retry_after, failure_body = self._failures.pop(0)
                extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                return status, failure_body or {"message": "injected failure"}, extra

            if not self.authorized(headers):
                return 401, {"message": "authorization required"}, {}
            if isinstance(body, str):
                return 400, {"message": "body JSON is invalid"}, {}
            for network_id in self.forbidden_networks:
                if "/network/%s" % network_id in path:
                    return 403, {"message": "forbidden"}, {}
            status, response = self.route(method, path, body)
            return status, response, {}

    def authorized(self, headers):
        raise NotImplementedError

    def route(self, method, path, body):
        raise NotImplementedError

    def requests_to(self, path):
        """Return the recorded requests whose path is `path`."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def token_matches(self, presented):
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())


class FakeZeroTierOne(FakeHttpApi):
    """A zerotier-one service: node status, joined networks, and a network controller."""

    def __init__(self, token, node_id=DEFAULT_NODE_ID, online=True):
        super().__init__(token)
        self.node_id = node_id
        self.online = online
        self.networks = {}
        self.controller_networks = {}

    def join_network(self, network_id, status="OK", addresses=("10.147.17.5/24",), name=""):
        """Put a joined network into the given state, as if its controller had configured it so."""
        with self._lock:
            network = self.networks.get(network_id) or new_local_network(network_id)
            network.update(status=status, assignedAddresses=list(addresses), name=name)
            self.networks[network_id] = network

    def host_network(self, network_id, name=""):
        """Create a network on the fake's controller."""
        with self._lock:
            self.controller_networks[network_id] = {
                "network": {"id": network_id, "nwid": network_id, "objtype": "network", "name": name, "private": True},
                "members": {},
            }

    def controller_member(self, network_id, member_id):
        """Return a copy of a stored controller member, or None."""
        with self._lock:
            member = self.controller_networks.get(network_id, {}).get("members", {}).get(member_id)
            return None if member is None else dict(member)

    def authorized(self, headers):
        return self.token_matches(headers.get("X-ZT1-Auth"))

    def route(self, method, path, body):
        if path.startswith("/controller"):
            return self.route_controller(method, path, body)

        if path == "/status" and method == "GET":
            return 200, {
                "address": self.node_id,
                "online": self.online,
                "version": FAKE_VERSION,
                "versionMajor": 1,
                "versionMinor": 14,
                "versionRev": 2,
                "tcpFallbackActive": False,
                "clock": int(time.time() * 1000),
                "publicIdentity": "%s:0:%s" % (self.node_id, "0" * 128),
            }
        if path == "/network" and method == "GET":
            return 200, [dict(network) for _, network in sorted(self.networks.items())]

        match = NETWORK_PATH.fullmatch(path)
        if match is None:
            return 404, {"message": "not found"}
        network_id = match.group(1)
        if method == "GET":
            network = self.networks.get(network_id)
            return (200, dict(network)) if network else (404, {"message": "not a member of this network"})
        if method in ("POST", "PUT"):
            if not HEX16.fullmatch(network_id):
                return 400, {"message": "invalid network id"}
            network = self.networks.setdefault(network_id, new_local_network(network_id))
            return 200, dict(network)
        if method == "DELETE":
            if self.networks.pop(network_id, None) is None:
                return 404, {"message": "not a member of this network"}
            return 200, {"result": True}
        return 405, {"message": "method not allowed"}

    def route_controller(self, method, path, body):
        if path == "/controller" and method == "GET":
            return 200, {"controller": True, "apiVersion": 4, "clock": int(time.time() * 1000)}

        match = CONTROLLER_MEMBER_PATH.fullmatch(path)
        if match:
            network_id, member_id = match.groups()
            hosted = self.controller_networks.get(network_id)
            if hosted is None:
                return 404, None
            members = hosted["members"]
            if method == "GET":
                member = members.get(member_id)
                return (200, dict(member)) if member else (404, None)
            if method in ("POST", "PUT"):
                member = members.setdefault(member_id, new_controller_member(network_id, member_id))
                self.apply_controller_fields(member, body or {})
                return 200, dict(member)
            return 405, None

        match = CONTROLLER_NETWORK_PATH.fullmatch(path)
        if match and method == "GET":
            hosted = self.controller_networks.get(match.group(1))
            return (200, dict(hosted["network"])) if hosted else (404, None)
        return 404, None

    def apply_controller_fields(self, member, body):
        if "authorized" in body and "authorized" not in self.ignored_member_fields:
            member["authorized"] = coerce_bool(body["authorized"])
        if "name" in body and "name" not in self.ignored_member_fields:
            member["name"] = coerce_string(body["name"])
        # Unknown fields, `description` among them, are dropped like ZeroTier One's controller does.
        member["revision"] += 1


class FakeCentral(FakeHttpApi):
    """ZeroTier Central's network and member endpoints."""

    base_path = "/api/v1"

    def __init__(self, token):
        super().__init__(token)
        self.networks = {}

    def add_network(self, network_id, name=""):
        with self._lock:
            self.networks[network_id] = {
                "network": {"id": network_id, "config": {"id": network_id, "name": name, "private": True}},
                "members": {},
            }

    def member(self, network_id, member_id):
        """Return a deep copy of a stored member, or None."""
        with self._lock:
            member = self.networks.get(network_id, {}).get("members", {}).get(member_id)
            return None if member is None else json.loads(json.dumps(member))

    def authorized(self, headers):
        value = headers.get("Authorization") or ""
        scheme, _, presented = value.partition(" ")
        return scheme.lower() in ("token", "bearer") and self.token_matches(presented)

    def route(self, method, path, body):
        match = CENTRAL_MEMBER_PATH.fullmatch(path)
        if match:
            network_id, member_id = match.groups()
            hosted = self.networks.get(network_id)
            if hosted is None:
                return 404, {"message": "network not found"}
            members = hosted["members"]
            if method == "GET":
                member = members.get(member_id)
                return (200, json.loads(json.dumps(member))) if member else (404, {"message": "member not found"})
            if method == "POST":
                member = members.setdefault(member_id, new_central_member(network_id, member_id))
                self.apply_central_fields(member, body or {})
                return 200, json.loads(json.dumps(member))
            return 405, {"message": "method not allowed"}

        match = CENTRAL_NETWORK_PATH.fullmatch(path)
        if match and method == "GET":
            hosted = self.networks.get(match.group(1))
            return (200, dict(hosted["network"])) if hosted else (404, {"message": "network not found"})
        return 404, {"message": "not found"}

    def apply_central_fields(self, member, body):
        for field_name in ("name", "description"):
            value = body.get(field_name)
            if isinstance(value, str) and field_name not in self.ignored_member_fields:
                member[field_name] = value
        config = body.get("config")
        if isinstance(config, dict):
            value = config.get("authorized")
            if isinstance(value, bool) and "authorized" not in self.ignored_member_fields:
                member["config"]["authorized"] = value
        member["lastModified"] = int(time.time() * 1000)


def new_local_network(network_id):
    return {
        "id": network_id,
        "nwid": network_id,
        "name": "",
        "status": "REQUESTING_CONFIGURATION",
        "type": "PRIVATE",
        "mac": "5e:00:00:00:00:01",
        "mtu": 2800,
        "dhcp": False,
        "bridge": False,
        "broadcastEnabled": True,
        "portError": 0,
        "netconfRevision": 0,
        "assignedAddresses": [],
        "routes": [],
        "portDeviceName": "ztfake0",
        "allowManaged": True,
        "allowGlobal": False,
        "allowDefault": False,
    }


def new_controller_member(network_id, member_id):
    return {
        "id": member_id,
        "address": member_id,
        "nwid": network_id,
        "objtype": "member",
        "authorized": False,
        "activeBridge": False,
        "ipAssignments": [],
        "name": "",
        "revision": 0,
    }


def new_central_member(network_id, member_id):
    return {
        "id": "%s-%s" % (network_id, member_id),
        "networkId": network_id,
        "nodeId": member_id,
        "name": "",
        "description": "",
        "hidden": False,
        "config": {"authorized": False, "ipAssignments": [], "activeBridge": False},
    }


def coerce_bool(value):
    """Convert a JSON value to bool the way ZeroTier One's OSUtils::jsonBool does."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        # The C++ casts to uint64_t, so a fraction below 1 is false and a negative number true.
        return int(value) != 0
    if isinstance(value, str):
        return value[:1] in ("t", "T", "1")
    return False


def coerce_string(value):
    """Convert a JSON value to str the way ZeroTier One's OSUtils::jsonString does."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "%d" % value
    return ""


def make_handler(api):
    """Return a request handler class that passes every request to `api.dispatch`."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeZeroTier"

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            status, body, extra_headers = api.dispatch(self.command, self.path, self.headers, raw_body)
            data = b"" if body is None else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

        def log_message(self, format, *args):
            # The request line carries no token (tokens travel in headers only).
            log.debug("%s: " + format, type(api).__name__, *args)

    return Handler
