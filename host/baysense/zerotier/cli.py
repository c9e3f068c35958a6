"""`baysense zerotier`: this host's ZeroTier service, and members on a controller or on Central.

Every command is a thin wrapper over LocalService, ControllerMembers, CentralMembers and
authorize_member. Tokens are read as `tokens` describes and never taken as arguments.
"""

import json
from dataclasses import dataclass

import click

from .fake_cli import fake_command
from .members import DEFAULT_CENTRAL_URL, ENV_CENTRAL_URL, CentralMembers, ControllerMembers, authorize_member
from .service import DEFAULT_SERVICE_URL, ENV_SERVICE_URL, LocalService
from .tokens import ENV_CENTRAL_TOKEN, ENV_CENTRAL_TOKEN_FILE, ENV_SERVICE_TOKEN_FILE


@dataclass(frozen=True)
class Settings:
    service_url: str
    token_file: object
    central_url: str
    central_token_file: object

    def service(self):
        return LocalService.connect(self.service_url, self.token_file)

    def members(self, api_kind):
        if api_kind == "central":
            return CentralMembers.connect(self.central_url, self.central_token_file)
        return ControllerMembers.connect(self.service_url, self.token_file)


def api_kind_options(function):
    """Add the --controller / --central choice (default --controller) as `api_kind`."""
    function = click.option(
        "--central", "api_kind", flag_value="central",
        help="Use ZeroTier Central (my.zerotier.com) with the Central token.",
    )(function)
    function = click.option(
        "--controller", "api_kind", flag_value="controller", default=True,
        help="Use the self-hosted controller in the local service (default).",
    )(function)
    return function


@click.group("zerotier")
@click.option(
    "--service-url", envvar=ENV_SERVICE_URL, default=DEFAULT_SERVICE_URL, show_default=True,
    help="URL of the ZeroTier One service API, which also hosts a self-hosted controller "
    "[env: %s]." % ENV_SERVICE_URL,
)
@click.option(
    "--token-file", envvar=ENV_SERVICE_TOKEN_FILE, type=click.Path(dir_okay=False),
    help="File containing the service token; default /var/lib/zerotier-one/authtoken.secret, "
    "then ~/.zeroTierOneAuthToken [env: %s]." % ENV_SERVICE_TOKEN_FILE,
)
@click.option(
    "--central-url", envvar=ENV_CENTRAL_URL, default=DEFAULT_CENTRAL_URL, show_default=True,
    help="Base URL of the ZeroTier Central API [env: %s]." % ENV_CENTRAL_URL,
)
@click.option(
    "--central-token-file", envvar=ENV_CENTRAL_TOKEN_FILE, type=click.Path(dir_okay=False),
    help="File containing the Central API token; without it the token is read from %s "
    "[env: %s]." % (ENV_CENTRAL_TOKEN, ENV_CENTRAL_TOKEN_FILE),
)
@click.pass_context
def zerotier_group(ctx, service_url, token_file, central_url, central_token_file):
    """Join and inspect ZeroTier networks, and authorize network members.

    API tokens are read from files or the environment, never from arguments. Token
    files must not be readable by group or others (chmod 600).
    """
    ctx.ensure_object(dict)
    ctx.obj["zerotier"] = Settings(service_url, token_file, central_url, central_token_file)


def settings_of(ctx):
    return ctx.obj["zerotier"]


@zerotier_group.command("status")
@click.pass_context
def status_command(ctx):
    """Show this node's ZeroTier address and whether it is online."""
    status = settings_of(ctx).service().status()
    state = "online" if status.online else "offline (no ZeroTier root server reachable)"
    click.echo("node %s %s, ZeroTier One %s" % (status.address, state, status.version or "(version unknown)"))


@zerotier_group.command("networks")
@click.option("--json", "as_json", is_flag=True, help="Print the networks as a JSON list.")
@click.pass_context
def networks_command(ctx, as_json):
    """List the networks this host has joined, with status and assigned addresses."""
    networks = settings_of(ctx).service().networks()
    if as_json:
        rows = [
            {
                "id": network.id,
                "name": network.name,
                "status": network.status,
                "type": network.type,
                "assigned_addresses": list(network.assigned_addresses),
            }
            for network in networks
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not networks:
        click.echo("no networks joined; `baysense zerotier join NETWORK_ID` joins one")
        return
    click.echo(format_table(
        ("NETWORK", "STATUS", "NAME", "ADDRESSES"),
        [(n.id, n.status, n.name or "-", ", ".join(n.assigned_addresses) or "-") for n in networks],
    ))


@zerotier_group.command("join")
@click.argument("network_id")
@click.pass_context
def join_command(ctx, network_id):
    """Join NETWORK_ID (16 hex digits)."""
    service = settings_of(ctx).service()
    network = service.join(network_id)
    node = service.status().address
    click.echo("joined %s (status %s)" % (network.id, network.status))
    if network.status != "OK":
        click.echo(
            "next: authorize node %s on the network's controller, e.g. "
            "`baysense zerotier authorize %s %s --name NAME`" % (node, network.id, node)
        )


@zerotier_group.command("leave")
@click.argument("network_id")
@click.pass_context
def leave_command(ctx, network_id):
    """Leave NETWORK_ID."""
    settings_of(ctx).service().leave(network_id)
    click.echo("left %s" % network_id.lower())


@zerotier_group.command("authorize")
@click.argument("network_id")
@click.argument("member_id")
@click.option("--name", required=True, help="Member name shown by the controller.")
@click.option(
    "--description",
    help="Member description. Central stores it, but ZeroTier One's controller does not, so a"
    " description given there is logged as not saved. Without it, the description is left unchanged.",
)
@api_kind_options
@click.pass_context
def authorize_command(ctx, network_id, member_id, name, description, api_kind):
    """Authorize MEMBER_ID (a 10-hex-digit node address) on NETWORK_ID and confirm it."""
    api = settings_of(ctx).members(api_kind)
    member = authorize_member(api, network_id, member_id, name, description)
    click.echo("authorized %s on %s as %r (%s)" % (member.member_id, member.network_id, member.name, member.source))


@zerotier_group.command("member")
@click.argument("network_id")
@click.argument("member_id")
@click.option("--json", "as_json", is_flag=True, help="Print the member as JSON.")
@api_kind_options
@click.pass_context
def member_command(ctx, network_id, member_id, as_json, api_kind):
    """Show MEMBER_ID on NETWORK_ID: authorized, name, description and IP assignments."""
    member = settings_of(ctx).members(api_kind).get_member(network_id, member_id)
    if as_json:
        click.echo(json.dumps(member.to_json(), indent=2))
        return
    click.echo("member %s on network %s (%s)" % (member.member_id, member.network_id, member.source))
    click.echo("  authorized:  %s" % ("yes" if member.authorized is True else "no"))
    click.echo("  name:        %s" % (member.name if member.name is not None else "-"))
    click.echo("  description: %s" % (member.description if member.description is not None else "- (not stored)"))
    click.echo("  addresses:   %s" % (", ".join(member.ip_assignments) or "-"))


def format_table(header, rows):
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


zerotier_group.add_command(fake_command)
