"""Serial port selection shared by every command that takes --port."""

import os

import click

from .errors import ConfigError

ENV_PORT = "BAYSENSE_PORT"


def resolve_port(spec):
    """Turn a --port value into something pyserial opens."""
    if not spec:
        spec = os.environ.get(ENV_PORT)
    if not spec:
        raise ConfigError("no port given", "pass --port PORT or set %s" % ENV_PORT)
    return spec


port_option = click.option(
    "--port",
    "-p",
    envvar=ENV_PORT,
    help="Serial port of the board: a device path, socket://HOST:PORT or rfc2217://HOST:PORT. "
    "Default: $%s." % ENV_PORT,
)
