"""`baysense zerotier fake`: serve the loopback ZeroTier fake until stopped, for trying fleets.

serve_fake() is the plain function: it starts a FakeZeroTierOne (the local service and its
self-hosted controller) or a FakeCentral with the given networks. The command prints the URL
to put in a fleet manifest's `[zerotier] url` or in `baysense zerotier --service-url`, then
serves until SIGTERM or Ctrl-C.
"""

import ipaddress
import logging
import signal
import threading

import click

from ..errors import ConfigError
from .fake import DEFAULT_NODE_ID, FakeCentral, FakeZeroTierOne
from .ids import validate_member_id, validate_network_id, validate_port
from .tokens import read_token_file

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:0"
# The address a joined network reports, so a gateway started with `--listen zt:NWID:PORT`
# binds to loopback on this host, as the fake itself does.
JOINED_ADDRESS = "127.0.0.1/8"
# How often (seconds) the command checks whether it was asked to stop.
STOP_POLL_S = 0.5


def parse_listen(text, allow_remote=False):
    """Return (host, port) of `--listen HOST:PORT`. Port 0 picks a free one.

    The fake accepts any request that carries its token, and it is meant for tests, so a
    host that is not a loopback address raises ConfigError unless `allow_remote` is set.
    """
    host, separator, port_text = text.rpartition(":")
    if not separator or not host:
        raise ConfigError("invalid --listen %r" % text, "write HOST:PORT, for example 127.0.0.1:9993")
    port = 0 if port_text.strip() == "0" else validate_port(port_text, text)
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ConfigError("invalid host %r in --listen %s" % (host, text), "give an IPv4 address such as 127.0.0.1") from None
    if not address.is_loopback and not allow_remote:
        raise ConfigError(
            "--listen %s is not a loopback address" % text,
            "use 127.0.0.1, because the fake is meant for tests on this host, or pass --allow-remote to serve other hosts",
        )
    return host, port


def serve_fake(token, host="127.0.0.1", port=0, api="controller", networks=(), joined=(), node_id=DEFAULT_NODE_ID):
    """Start a fake ZeroTier API on host:port with `networks` hosted and `joined` joined; return it.

    api "controller" starts a FakeZeroTierOne: `networks` are hosted on its controller, and
    `joined` are the networks its local service reports as joined, at JOINED_ADDRESS.
    api "central" starts a FakeCentral with `networks`; it has no local service, so `joined`
    raises ConfigError. Stop it with .stop().
    """
    if api == "central":
        if joined:
            raise ConfigError("--join is for the local service, which --api central does not serve", "drop --join, or use --api controller")
        fake = FakeCentral(token)
        for network_id in networks:
            fake.add_network(network_id)
    else:
        fake = FakeZeroTierOne(token, node_id=node_id)
        for network_id in networks:
            fake.host_network(network_id)
        for network_id in joined:
            fake.join_network(network_id, addresses=(JOINED_ADDRESS,))
    try:
        return fake.start(host, port)
    except OSError as error:
        raise ConfigError("cannot listen on %s:%d (%s)" % (host, port, error.strerror or error), "choose another port, or 0 for a free one") from None


@click.command("fake")
@click.option(
    "--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
    help="Address to serve on. Port 0 picks a free one. Loopback only unless --allow-remote.",
)
@click.option("--allow-remote", is_flag=True, help="Accept a --listen address that is not loopback.")
@click.option(
    "--token-file", required=True, type=click.Path(dir_okay=False, exists=True),
    help="File containing the token that clients must send (mode 600). Pass the same file to them.",
)
@click.option(
    "--api", type=click.Choice(["controller", "central"]), default="controller", show_default=True,
    help="controller: the local service with a self-hosted controller. central: ZeroTier Central's API.",
)
@click.option("--network", "networks", multiple=True, metavar="NWID", help="Network to host (controller) or create (central). Repeatable.")
@click.option(
    "--join", "joined", multiple=True, metavar="NWID",
    help="Network the local service reports as joined, at %s. Repeatable, controller only." % JOINED_ADDRESS,
)
@click.option("--node-id", default=DEFAULT_NODE_ID, show_default=True, help="The fake service's own 10-hex-digit node id.")
def fake_command(listen, allow_remote, token_file, api, networks, joined, node_id):
    """Serve a fake ZeroTier API on loopback, for trying `fleet` and `zerotier` without ZeroTier.

    The first line of output is `url: <URL>`, the value for a fleet manifest's `[zerotier] url`
    or `baysense zerotier --service-url` (with --api central: `--central-url`). It keeps the
    networks and members in memory only, and stops on SIGTERM or Ctrl-C.
    """
    host, port = parse_listen(listen, allow_remote)
    networks = [validate_network_id(value) for value in networks]
    joined = [validate_network_id(value) for value in joined]
    token = read_token_file(token_file)
    fake = serve_fake(token.reveal(), host, port, api, networks, joined, validate_member_id(node_id))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo("url: %s" % fake.url)
    for network_id in networks:
        click.echo("network: %s (%s)" % (network_id, "hosted" if api == "controller" else "on central"))
    for network_id in joined:
        click.echo("joined: %s at %s" % (network_id, JOINED_ADDRESS))
    log.info("fake ZeroTier %s API on %s", api, fake.url)
    try:
        while not stop.wait(STOP_POLL_S):
            pass
    finally:
        fake.stop()
        log.info("fake ZeroTier API stopped after %d requests", len(fake.requests))
