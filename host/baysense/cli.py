"""The `baysense` command line: a thin layer over plain functions in the package.

Each command lives in the module named in COMMANDS and is imported only when it runs, so
`baysense --help` stays fast and one broken extra does not stop the others.
"""

import importlib
import logging
import sys

import click

from . import __version__
from .errors import BaysenseError

# command name -> "module:attribute" of a click command, relative to this package
COMMANDS = {
    "vboard": "vboard.cli:vboard",
    "stimulus": "vboard.cli:stimulus_command",
    "deploy": "deploy:deploy_command",
    "ports": "ports:ports_command",
    "provision": "provision:provision_command",
    "gateway": "gateway.cli:gateway_command",
    "status": "gateway.cli:status_command",
    "demo": "demo:demo_command",
    "replay": "replay:replay_command",
    "rom": "rom.cli:rom_command",
    "flash": "flash:flash_command",
    "zerotier": "zerotier.cli:zerotier_group",
    "fleet": "fleet.cli:fleet_group",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        module = importlib.import_module("." + module_name, __package__)
        return getattr(module, attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="baysense")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug); show tracebacks.")
@click.pass_context
def cli(ctx, verbose):
    """Baysense: parking-bay sensing on ESP32 fleets."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


def main(argv=None):
    """Run the CLI; return the exit status instead of exiting, so tests can call it."""
    verbose = argv is not None and any(a in ("-v", "-vv", "--verbose") for a in argv)
    try:
        # Without standalone mode click returns a command's exit status (ctx.exit(n) or
        # raise Exit(n)) instead of raising it.
        status = cli.main(args=argv, prog_name="baysense", standalone_mode=False)
    except BaysenseError as error:
        click.echo("baysense: %s" % error, err=True)
        if verbose:
            raise
        return 1
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("baysense: aborted", err=True)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
