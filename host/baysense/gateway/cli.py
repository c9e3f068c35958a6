"""`baysense gateway` and `baysense status`: thin click wrappers over the gateway package."""

import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import click

from ..errors import ConfigError
from ..registry import check_folder, default_path
from .server import Gateway, format_address
from .status import format_status, read_status

log = logging.getLogger(__name__)


def parse_listen(value):
    """Split HOST:PORT (or [IPv6]:PORT) into (host, port)."""
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


# The first 16 bytes of every SQLite 3 database file, fixed by its file format.
SQLITE_HEADER = b"SQLite format 3\x00"
# A table each kind of file has and the other has not, to tell them apart before opening.
REGISTRY_TABLE = "devices"
GATEWAY_TABLE = "reports"
DB_HINT = "pass the gateway's database to --db, or a new path to create one"
REGISTRY_HINT = "pass the registry that `baysense provision` writes (default: $BAYSENSE_REGISTRY or ~/.local/share/baysense/registry.db)"


def _tables(path, option, hint):
    # Return the table names of an existing SQLite file, or None for a missing or empty file.
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError("cannot read %s %s: %s" % (option, path, error.strerror), "check the path and its permissions") from None
    if not header:
        return None
    if header != SQLITE_HEADER:
        raise ConfigError("%s %s is not an SQLite database" % (option, path), hint)

    # Read-only, so this check writes nothing into a file the user may have passed by mistake.
    try:
        connection = sqlite3.connect("file:%s?mode=ro" % Path(path).resolve(), uri=True)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise ConfigError("%s %s is not a readable SQLite database (%s)" % (option, path, error), hint) from None
    return {row[0] for row in rows}


def check_databases(db_path, registry_path):
    """Raise ConfigError unless --db and --registry are two different files of the right kind.

    The registry contains device keys and is kept private, so the gateway's tables (readable
    by `baysense status`) must never be added to it, nor may reports become the registry.
    """
    same = Path(db_path).resolve() == Path(registry_path).resolve()
    if not same and os.path.exists(db_path) and os.path.exists(registry_path):
        same = os.path.samefile(db_path, registry_path)
    if same:
        raise ConfigError(
            "--db and --registry name the same file (%s)" % db_path,
            "keep the reports apart from the device keys: pass another, new file to --db",
        )

    db_tables = _tables(db_path, "--db", DB_HINT)
    if db_tables is not None and REGISTRY_TABLE in db_tables:
        raise ConfigError(
            "--db %s is a device registry (it has a %s table)" % (db_path, REGISTRY_TABLE),
            "pass the gateway's own database to --db, and this file to --registry",
        )
    registry_tables = _tables(registry_path, "--registry", REGISTRY_HINT)
    if registry_tables is not None and GATEWAY_TABLE in registry_tables and REGISTRY_TABLE not in registry_tables:
        raise ConfigError(
            "--registry %s is a gateway database (it has a %s table), not a device registry" % (registry_path, GATEWAY_TABLE),
            REGISTRY_HINT,
        )


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
    # A registry other than the one `baysense provision` wrote starts a gateway that rejects
    # every report, so print the one it read.
    path, devices = gateway.registry_devices
    if devices:
        sys.stdout.write("registry: %s (%d devices)\n" % (path, devices))
    else:
        sys.stdout.write(
            "registry: %s (no devices yet: reports are rejected until `baysense provision` adds one to it)\n" % path
        )
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
    registry_path = Path(registry_path or default_path())
    # Checked before anything is created: a typo in either path would start a gateway whose
    # reports `baysense status` never shows, or one without the device keys.
    check_folder(registry_path)
    if not Path(db_path).resolve().parent.is_dir():
        raise ConfigError(
            "folder of --db %s not found" % db_path,
            "check the path, or create the folder first",
        )
    check_databases(db_path, registry_path)
    asyncio.run(run_gateway(db_path, registry_path, host, port))


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
