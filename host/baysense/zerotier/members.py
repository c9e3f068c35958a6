"""Network members on a self-hosted controller or on ZeroTier Central.

Neither API rejects a value of the wrong type. ZeroTier One's controller coerces it (the
string "yes" for `authorized` becomes false, see OSUtils::jsonBool in ZeroTierOne), and
Central ignores it. So `authorize_member` sends a JSON boolean and strings, then reads the
member back and raises MemberNotUpdatedError for any value that did not take.
"""

import logging
import os
from dataclasses import dataclass, field

from ..errors import ConfigError
from .client import ApiClient, ApiTarget
from .errors import MemberNotUpdatedError, ZeroTierError, ZeroTierNotFoundError
from .ids import validate_member_id, validate_network_id
from .service import AUTH_HEADER, DEFAULT_SERVICE_URL, ENV_SERVICE_URL
from .tokens import ENV_CENTRAL_TOKEN, ENV_CENTRAL_TOKEN_FILE, ENV_SERVICE_TOKEN_FILE, load_central_token, load_service_token

log = logging.getLogger(__name__)

DEFAULT_CENTRAL_URL = "https://api.zerotier.com/api/v1"
ENV_CENTRAL_URL = "BAYSENSE_ZT_CENTRAL_URL"

CONTROLLER_TARGET = ApiTarget(
    name="ZeroTier controller",
    auth_hint=(
        "check the token file (--token-file or %s, else authtoken.secret): it must contain "
        "the authtoken.secret of the zerotier-one that hosts the controller" % ENV_SERVICE_TOKEN_FILE
    ),
    forbidden_hint=(
        "the service accepts API requests only from addresses allowed by allowManagementFrom "
        "in its local.conf: run the command on the controller host, or allow this address there"
    ),
    not_found_hint=(
        "check the network id: a self-hosted controller hosts only networks whose id starts "
        "with its own node id; for a network hosted on my.zerotier.com use --central"
    ),
    unreachable_hint=(
        "check that zerotier-one is running on the controller host and that --service-url or "
        "%s points at it" % ENV_SERVICE_URL
    ),
)

CENTRAL_TARGET = ApiTarget(
    name="ZeroTier Central",
    auth_hint=(
        "check the Central token (--central-token-file, %s or %s): it may be mistyped, revoked "
        "or expired; create a new one on the Account page of my.zerotier.com"
        % (ENV_CENTRAL_TOKEN_FILE, ENV_CENTRAL_TOKEN)
    ),
    forbidden_hint=(
        "the token is valid but its account may not manage this network: use a token of an "
        "account or organization that owns the network"
    ),
    not_found_hint=(
        "check the network and member ids; for a network on a self-hosted controller use --controller"
    ),
    unreachable_hint=(
        "check the internet connection and --central-url or %s" % ENV_CENTRAL_URL
    ),
)


@dataclass(frozen=True)
class Member:
    """A network member as read back from its controller.

    `name` and `description` are None when the API's member object has no such field,
    which is how ZeroTier One's controller treats `description`.
    """

    network_id: str
    member_id: str
    authorized: object
    name: object
    description: object
    ip_assignments: tuple
    source: str
    raw: dict = field(repr=False, compare=False)

    def to_json(self):
        return {
            "network_id": self.network_id,
            "member_id": self.member_id,
            "authorized": self.authorized,
            "name": self.name,
            "description": self.description,
            "ip_assignments": list(self.ip_assignments),
            "source": self.source,
        }


class ControllerMembers:
    """Members of networks hosted by a self-hosted controller (/controller on the local service)."""

    source = "controller"

    def __init__(self, client):
        self.client = client

    @classmethod
    def connect(cls, url=None, token_file=None, **client_options):
        url = url or os.environ.get(ENV_SERVICE_URL) or DEFAULT_SERVICE_URL
        token = load_service_token(token_file)
        return cls(ApiClient(url, CONTROLLER_TARGET, token, AUTH_HEADER, **client_options))

    def get_member(self, network_id, member_id):
        """Return one member (GET /controller/network/{nwid}/member/{id})."""
        network_id, member_id = validate_network_id(network_id), validate_member_id(member_id)
        body = self._call("GET", network_id, member_id)
        if not isinstance(body, dict):
            raise unexpected_member(self.client, network_id, member_id)
        addresses = body.get("ipAssignments") or []
        return Member(
            network_id=network_id,
            member_id=member_id,
            authorized=body.get("authorized"),
            name=body.get("name"),
            description=body.get("description"),
            ip_assignments=tuple(addresses) if isinstance(addresses, list) else (),
            source=self.source,
            raw=body,
        )

    def update_member(self, network_id, member_id, authorized, name, description=None):
        """Send authorized, name and description in one POST; the controller creates an unknown member.

        A description of None is not sent.
        """
        network_id, member_id = validate_network_id(network_id), validate_member_id(member_id)
        body = {"authorized": authorized, "name": name}
        if description is not None:
            body["description"] = description
        self._call("POST", network_id, member_id, body)

    def _call(self, method, network_id, member_id, body=None):
        path = "/controller/network/%s/member/%s" % (network_id, member_id)
        try:
            return self.client.request(method, path, body)
        except ZeroTierNotFoundError as error:
            raise explain_not_found(self.client, "/controller/network/%s" % network_id, network_id, member_id, error) from error


class CentralMembers:
    """Members of networks on ZeroTier Central (api.zerotier.com, `Authorization: token ...`)."""

    source = "central"

    def __init__(self, client):
        self.client = client

    @classmethod
    def connect(cls, url=None, token_file=None, **client_options):
        url = url or os.environ.get(ENV_CENTRAL_URL) or DEFAULT_CENTRAL_URL
        token = load_central_token(token_file)
        client = ApiClient(
            url, CENTRAL_TARGET, token, "Authorization", auth_format="token %s", https_required=True,
            **client_options,
        )
        return cls(client)

    def get_member(self, network_id, member_id):
        """Return one member (GET /network/{nwid}/member/{id}); `authorized` is in `config`."""
        network_id, member_id = validate_network_id(network_id), validate_member_id(member_id)
        body = self._call("GET", network_id, member_id)
        if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
            raise unexpected_member(self.client, network_id, member_id)
        config = body["config"]
        addresses = config.get("ipAssignments") or []
        return Member(
            network_id=network_id,
            member_id=member_id,
            authorized=config.get("authorized"),
            name=body.get("name"),
            description=body.get("description"),
            ip_assignments=tuple(addresses) if isinstance(addresses, list) else (),
            source=self.source,
            raw=body,
        )

    def update_member(self, network_id, member_id, authorized, name, description=None):
        """Send name, description and config.authorized in one POST. A description of None is not sent."""
        network_id, member_id = validate_network_id(network_id), validate_member_id(member_id)
        body = {"name": name, "config": {"authorized": authorized}}
        if description is not None:
            body["description"] = description
        self._call("POST", network_id, member_id, body)

    def _call(self, method, network_id, member_id, body=None):
        path = "/network/%s/member/%s" % (network_id, member_id)
        try:
            return self.client.request(method, path, body)
        except ZeroTierNotFoundError as error:
            raise explain_not_found(self.client, "/network/%s" % network_id, network_id, member_id, error) from error


def authorize_member(api, network_id, member_id, name, description=None):
    """Authorize a member, set its name and description, and return it as read back.

    `api` is a ControllerMembers or CentralMembers. A description of None leaves the
    member's description as it is. Raises ConfigError for ids or values of the wrong form,
    and MemberNotUpdatedError when the read-back member is not authorized or shows a
    different name or description. A field sent that the API's member object lacks
    altogether is logged as a warning instead, because the API does not store it
    (ZeroTier One's controller has no member description).
    """
    network_id = validate_network_id(network_id)
    member_id = validate_member_id(member_id)
    check_text("name", name)
    if description is not None:
        check_text("description", description)

    api.update_member(network_id, member_id, True, name, description)
    member = api.get_member(network_id, member_id)
    verify_member(api, member, name, description)

    log.info("authorized member %s on network %s through %s", member_id, network_id, api.client.described)
    return member


def verify_member(api, member, name, description):
    """Raise MemberNotUpdatedError unless the read-back member has the values sent."""
    mismatches = []
    if member.authorized is not True:
        mismatches.append("authorized: sent true, read back %s" % describe_value(member.authorized))
    for field_name, sent, read in (("name", name, member.name), ("description", description, member.description)):
        if sent is None:
            continue  # not sent, so not checked
        if read is None and field_name not in member.raw:
            log.warning(
                "%s does not store a member %s; %s of member %s on network %s not saved",
                api.client.described, field_name, field_name, member.member_id, member.network_id,
            )
            continue
        if read != sent:
            mismatches.append("%s: sent %s, read back %s" % (field_name, describe_value(sent), describe_value(read)))

    if mismatches:
        raise MemberNotUpdatedError(
            "%s did not apply every value for member %s on network %s (%s)"
            % (api.client.described, member.member_id, member.network_id, "; ".join(mismatches)),
            "run the command again; if it persists, check that this is the controller of "
            "the network and set the values in its web UI",
            mismatches=mismatches,
        )


def describe_value(value):
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def check_text(field_name, value):
    if not isinstance(value, str):
        raise ConfigError(
            "member %s must be text, got %s %r" % (field_name, type(value).__name__, value),
            "give the %s as a string; the ZeroTier APIs silently drop or convert other types" % field_name,
        )


def explain_not_found(client, network_path, network_id, member_id, error):
    """Return a not-found error that names what is missing: the network or the member."""
    try:
        client.get(network_path)
    except ZeroTierNotFoundError:
        return ZeroTierNotFoundError(
            "network %s not found at %s" % (network_id, client.described),
            client.target.not_found_hint,
            status=error.status, method=error.method, path=error.path,
        )
    except ZeroTierError:
        # The original 404 is the more useful report when the second request fails too.
        pass
    return ZeroTierNotFoundError(
        "member %s not found on network %s at %s" % (member_id, network_id, client.described),
        "check the member id (the node's 10-digit address from `baysense zerotier status` on "
        "that host); a node appears once it has tried to join the network",
        status=error.status, method=error.method, path=error.path,
    )


def unexpected_member(client, network_id, member_id):
    return ZeroTierError(
        "unexpected response for member %s on network %s from %s" % (member_id, network_id, client.described),
        "check that the URL points at the right API (controller or Central)",
    )
