"""The gateway's listen address: `HOST:PORT`, or `zt:NETWORK_ID:PORT` for this host's
address on a ZeroTier network, found through the local service."""

import ipaddress
import logging
import re

from ..errors import ConfigError
from .errors import NetworkNotReadyError, ZeroTierNotFoundError
from .ids import validate_network_id, validate_port
from . import service as zt_service

log = logging.getLogger(__name__)

ZT_PREFIX = "zt:"
# A DNS name of RFC 1123 labels; anything else that is not an IP address is a typo.
HOSTNAME_PATTERN = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")

FORMS = "give HOST:PORT (e.g. 0.0.0.0:5683 or [::1]:5683) or zt:NETWORK_ID:PORT"

# Message and hint for each status of a joined network other than OK.
STATUS_PROBLEMS = {
    zt_service.STATUS_ACCESS_DENIED: (
        "this host (node %(node)s) is not authorized on ZeroTier network %(network)s",
        "authorize it: `baysense zerotier authorize %(network)s %(node)s --name NAME` "
        "(add --central for a network on my.zerotier.com), or in the controller's web UI",
    ),
    zt_service.STATUS_REQUESTING_CONFIGURATION: (
        "this host is still waiting for its configuration of ZeroTier network %(network)s",
        "wait a few seconds and start again; if it persists, check that this host is online and "
        "that node %(node)s is authorized on the network",
    ),
    zt_service.STATUS_NOT_FOUND: (
        "the controller of ZeroTier network %(network)s reports that the network does not exist",
        "check the network id, and leave the wrong one with `baysense zerotier leave %(network)s`",
    ),
    zt_service.STATUS_AUTHENTICATION_REQUIRED: (
        "ZeroTier network %(network)s requires a single sign-on login for node %(node)s",
        "complete the login that ZeroTier's client shows, then start again",
    ),
    zt_service.STATUS_PORT_ERROR: (
        "zerotier-one could not create the virtual network device for network %(network)s",
        "check the zerotier-one log; it needs /dev/net/tun and the CAP_NET_ADMIN capability",
    ),
    zt_service.STATUS_CLIENT_TOO_OLD: (
        "the controller of ZeroTier network %(network)s rejects this zerotier-one version as too old",
        "upgrade zerotier-one on this host",
    ),
}


def resolve_listen(spec, service=None):
    """Return the (host, port) that a listen spec names.

    `HOST:PORT` is checked and returned, with the brackets of an IPv6 host removed.
    `zt:NETWORK_ID:PORT` is resolved to this host's address on that network through
    `service` (a LocalService; by default `LocalService.connect()`), preferring IPv4.
    Raises ConfigError for a malformed spec and NetworkNotReadyError while the network
    is not joined, not authorized, or has no address assigned to this host.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("empty listen address %r" % (spec,), FORMS)
    spec = spec.strip()

    if spec[: len(ZT_PREFIX)].lower() == ZT_PREFIX:
        network_id, port = parse_zt_spec(spec)
        if service is None:
            service = zt_service.LocalService.connect()
        host = zerotier_address(service, network_id)
        log.info("listen address on ZeroTier network %s is %s:%d", network_id, host, port)
        return host, port

    return parse_host_port(spec)


def parse_zt_spec(spec):
    """Return (network id, port) from `zt:NETWORK_ID:PORT`, or raise ConfigError naming the spec."""
    parts = spec[len(ZT_PREFIX):].split(":")
    if len(parts) != 2:
        raise ConfigError("invalid ZeroTier listen address %r" % spec, "expected zt:NETWORK_ID:PORT, e.g. zt:8056c2e21c000001:5683")
    try:
        network_id = validate_network_id(parts[0])
    except ConfigError as error:
        raise ConfigError("invalid network id %r in listen address %r" % (parts[0], spec), error.hint) from None
    return network_id, validate_port(parts[1], spec)


def parse_host_port(spec):
    """Return (host, port) from `HOST:PORT` or `[IPV6]:PORT`, or raise ConfigError naming the spec."""
    if spec.startswith("["):
        host, separator, port_text = spec[1:].partition("]:")
        if not separator:
            raise ConfigError("invalid listen address %r: expected [IPV6]:PORT" % spec, FORMS)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError("invalid IPv6 address %r in listen address %r" % (host, spec), FORMS) from None
        return host, validate_port(port_text, spec)

    host, separator, port_text = spec.rpartition(":")
    if not separator:
        raise ConfigError("listen address %r has no port" % spec, FORMS)
    if ":" in host:
        raise ConfigError("invalid listen address %r: put an IPv6 host in brackets, e.g. [::1]:5683" % spec, FORMS)
    if not host:
        raise ConfigError(
            "listen address %r has no host" % spec,
            "use 0.0.0.0:%s to listen on every IPv4 address, or name one address" % port_text,
        )
    if not is_ip_address(host) and not HOSTNAME_PATTERN.fullmatch(host):
        raise ConfigError("invalid host %r in listen address %r" % (host, spec), FORMS)
    return host, validate_port(port_text, spec)


def is_ip_address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def zerotier_address(service, network_id):
    """Return this host's IP address on a joined, authorized network, preferring IPv4."""
    try:
        network = service.network(network_id)
    except ZeroTierNotFoundError:
        raise NetworkNotReadyError(
            "this host has not joined ZeroTier network %s" % network_id,
            "run `baysense zerotier join %s`, then authorize this node on the network" % network_id,
        ) from None

    if network.status != zt_service.STATUS_OK:
        node = service.status().address
        message, hint = STATUS_PROBLEMS.get(
            network.status,
            ("ZeroTier network %(network)s is not ready on this host (status %(status)s)",
             "check `baysense zerotier networks` and the zerotier-one log"),
        )
        values = {"network": network_id, "node": node, "status": network.status}
        raise NetworkNotReadyError("%s (status %s)" % (message % values, network.status), hint % values)

    addresses = []
    for text in network.assigned_addresses:
        try:
            addresses.append(ipaddress.ip_interface(text).ip)
        except ValueError:
            log.warning("ignoring invalid assigned address %r on ZeroTier network %s", text, network_id)
    if not addresses:
        node = service.status().address
        raise NetworkNotReadyError(
            "this host (node %s) has no IP address on ZeroTier network %s yet" % (node, network_id),
            "enable IPv4 auto-assign on the network, or assign an address to member %s in its controller" % node,
        )

    # IPv4 first, so a network that assigns both kinds gives the same choice on every start.
    # The sort is stable, so the service's order decides within one kind.
    addresses.sort(key=lambda address: address.version)
    return str(addresses[0])
