"""Validation of ZeroTier identifiers and port numbers, with errors that name the value."""

import re

from ..errors import ConfigError

NETWORK_ID_PATTERN = re.compile(r"[0-9a-fA-F]{16}")
NODE_ID_PATTERN = re.compile(r"[0-9a-fA-F]{10}")
# ASCII digits only: str.isdigit() would accept superscripts that int() rejects.
PORT_PATTERN = re.compile(r"[0-9]{1,5}")

MIN_PORT = 1
MAX_PORT = 65535


def validate_network_id(value):
    """Return a network id as 16 lowercase hex digits, or raise ConfigError."""
    text = str(value).strip()
    if not NETWORK_ID_PATTERN.fullmatch(text):
        raise ConfigError(
            "invalid ZeroTier network id %r" % (value,),
            "a network id is 16 hex digits, for example 8056c2e21c000001",
        )
    return text.lower()


def validate_member_id(value):
    """Return a member (node) id as 10 lowercase hex digits, or raise ConfigError."""
    text = str(value).strip()
    if not NODE_ID_PATTERN.fullmatch(text):
        raise ConfigError(
            "invalid ZeroTier member id %r" % (value,),
            "a member id is the node's 10-hex-digit address, as `baysense zerotier status` "
            "prints it on that host",
        )
    return text.lower()


def validate_port(value, spec=None):
    """Return `value` as an int port in 1..65535, or raise ConfigError naming it (and `spec`)."""
    where = " in %r" % (spec,) if spec is not None else ""
    text = str(value).strip()
    if not PORT_PATTERN.fullmatch(text):
        raise ConfigError("invalid port %r%s" % (value, where), "give a number from 1 to 65535")
    port = int(text)
    if not MIN_PORT <= port <= MAX_PORT:
        raise ConfigError("port %d out of range%s" % (port, where), "give a number from 1 to 65535")
    return port
