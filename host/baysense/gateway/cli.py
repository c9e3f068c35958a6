"""`baysense gateway` and `baysense status`: thin click wrappers over the gateway package."""

import asyncio
import json
import logging
import signal
import sys
import time

import click

from ..registry import default_path
from .server import Gateway, format_address
from .status import format_status, read_status

log = logging.getLogger(__name__)


def parse_listen(value):
    """Split HOST:PORT (or [IPv6]:PORT) into (host, port)."""
    from ..errors import ConfigError

    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError("invalid listen address (%s)" % value, "use HOST:PORT, for example 0.0.0.0:4700")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ConfigError("invalid port in listen address (%s)" % value, "use a port from 0 to 65535 (0 picks a free one)")
    return host, number


async def run_gateway(db_path, registry_path, host, port, settings=None):
    """Run a gateway until SIGTERM or SIGINT; print the listening line first."""
    gateway = Gateway(db_path, registry_path, settings)
    address = await gateway.start(host, port)

    # Handlers go in before the listening line, because a script may signal right after it.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopping.set)

    # Scripts that start the gateway on port 0 read this line for the real port.
    sys.stdout.write("listening: udp://%s\n" % format_address(*address))
    sys.stdout.flush()
    try:
        await stopping.wait()
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
        await gateway.stop()


@click.command("gateway")
@click.option(
    "--listen",
    default="0.0.0.0:4700",
    show_default=True,
    help="UDP address to listen on: HOST:PORT (port 0 picks a free one), or zt:NETWORK_ID:PORT for this "
    "host's address on a joined and authorized ZeroTier network (read from the local service; see "
    "`baysense zerotier --help` for the token).",
)
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False), help="SQLite database for reports and bay states.")
@click.option(
    "--registry",
    "registry_path",
    type=click.Path(dir_okay=False),
    help="Device registry with the keys (default: $BAYSENSE_REGISTRY or ~/.local/share/baysense/registry.db).",
)
def gateway_command(listen, db_path, registry_path):
    """Receive authenticated bay reports over UDP, store them and acknowledge them."""
    if listen[:3].lower() == "zt:":
        from ..zerotier.listen import resolve_listen

        host, port = resolve_listen(listen)
    else:
        host, port = parse_listen(listen)
    asyncio.run(run_gateway(db_path, registry_path or default_path(), host, port))


@click.command("status")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False), help="The gateway's SQLite database.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: bays, health and tallies.")
def status_command(db_path, as_json):
    """Show each bay's state, last counter and heartbeat health, and the rejection tallies."""
    status = read_status(db_path, now=time.time())
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
    else:
        click.echo(format_status(status))
