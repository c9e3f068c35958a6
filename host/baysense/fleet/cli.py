"""`baysense fleet`: provision a site from a manifest, and export or show its progress."""

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from ..errors import BaysenseError, ConfigError
from ..provision import ENV_WIFI_PASSWORD, read_wifi_password
from ..registry import Registry
from . import export, manifest as manifest_module
from .progress import FAILED, SITE, Progress
from .runner import DEFAULT_AUTO_WAIT_S, Options, Run, exit_status, summary_counts
from .view import LineView, outcomes_json, print_summary, run_live

class FleetFailed(BaysenseError):
    """One or more bays (or the site's ZeroTier step) failed; each reason is in the summary."""


registry_option = click.option(
    "--registry", "registry_path", type=click.Path(dir_okay=False, path_type=Path),
    help="Registry database. Default: $BAYSENSE_REGISTRY or ~/.local/share/baysense/registry.db.",
)


@click.group("fleet")
def fleet_group():
    """Provision a whole site's boards from one manifest, resumably."""


@fleet_group.command("provision")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@registry_option
@click.option("--flash/--no-flash", default=None,
              help="Write the manifest's firmware image first. Default: the manifest's firmware.flash.")
@click.option("--force", is_flag=True, help="Redo every step, even those done and verified earlier.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for one log file per bay. Default: MANIFEST's folder, <name>-logs.")
@click.option("--auto-wait", "auto_wait_s", type=click.FloatRange(0), default=DEFAULT_AUTO_WAIT_S, show_default=True,
              help="Seconds `auto` bays wait for the next board to be plugged in.")
@click.option("--firmware-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of the node firmware to deploy. Default: firmware/ of this checkout.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every bay's outcome, for scripts.")
def provision_command(manifest_path, registry_path, flash, force, log_dir, auto_wait_s, firmware_dir, as_json):
    """Flash, deploy, provision and self-test every board of MANIFEST (TOML or CSV).

    One worker per port runs in parallel. Progress is kept in the registry: a re-run skips
    what is done and verified and resumes the rest, so Ctrl-C is safe. The exit status is 1
    when any board failed, 130 when the run was interrupted.
    """
    manifest = manifest_module.load(manifest_path)
    wifi = None  # without a [wifi] table, each board keeps its Wi-Fi settings
    if manifest.wifi_ssid:
        wifi = {"ssid": manifest.wifi_ssid, "password": wifi_password(manifest)}
    options = Options(
        flash=manifest.flash if flash is None else flash,
        force=force,
        log_dir=log_dir,
        wifi=wifi,
        auto_wait_s=auto_wait_s,
        firmware_dir=firmware_dir,
    )
    if options.flash and manifest.image is None:
        raise click.UsageError("--flash needs an image: add image = \"FILE.bin\" to the manifest's [firmware]")

    run = Run(manifest, registry_path, options)
    title = "%s: %d bays" % (manifest.community, len(manifest.bays))
    if as_json:
        outcomes = run.execute()
    elif sys.stderr.isatty():
        outcomes = run_live(run, title)
    else:
        options.on_event = LineView().on_event
        outcomes = run.execute()

    status = exit_status(outcomes)
    if as_json:
        click.echo(outcomes_json(manifest, outcomes, status, run.log_dir))
    else:
        print_summary(outcomes, title, Console(stderr=False))
        # Only bays are counted. The site's ZeroTier step is reported after them.
        counts = summary_counts([outcome for outcome in outcomes if outcome.bay != SITE])
        line = ", ".join("%d %s" % (count, result) for result, count in sorted(counts.items()))
        if run.site_outcome is not None:
            line += "; ZeroTier step %s" % run.site_outcome.result
        click.echo("%s; logs in %s" % (line, run.log_dir))
    # baysense.cli.main() turns these into the exit status: BaysenseError 1, Abort 130.
    if status == 130:
        raise click.exceptions.Abort()
    if status:
        raise FleetFailed(
            failure_summary(outcomes),
            "fix the reasons listed above and run the same command again: it resumes where each bay stopped",
        )


def failure_summary(outcomes):
    """Return what failed, counting bays apart from the site's ZeroTier step, which is no bay."""
    bays = [outcome for outcome in outcomes if outcome.bay != SITE]
    failed = [outcome.bay for outcome in bays if outcome.result == FAILED]
    parts = []
    if any(outcome.bay == SITE and outcome.result == FAILED for outcome in outcomes):
        parts.append("the ZeroTier step (%s) failed" % SITE)
    if failed or not parts:
        parts.append("%d of %d bays failed%s" % (len(failed), len(bays), " (%s)" % ", ".join(failed) if failed else ""))
    return " and ".join(parts)


def wifi_password(manifest):
    """Return the nodes' Wi-Fi password from the manifest's password file, the environment or a prompt."""
    path = manifest.wifi_password_file
    if path is None and os.environ.get(ENV_WIFI_PASSWORD) is None and not sys.stdin.isatty():
        raise ConfigError(
            "no Wi-Fi password for %r" % manifest.wifi_ssid,
            "name a password_file in the manifest's [wifi] table (CSV: wifi_password_file) or set %s" % ENV_WIFI_PASSWORD,
        )
    return read_wifi_password(path)


@fleet_group.command("export")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@registry_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the CSV here instead of stdout.")
def export_command(manifest_path, registry_path, output):
    """Write MANIFEST's bays, devices and progress as CSV. Keys are never exported."""
    manifest = manifest_module.load(manifest_path)
    with Registry(registry_path) as registry:
        text = export.to_csv(export.export_rows(registry, manifest.community, manifest))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo("exported %d bays to %s" % (len(manifest.bays), output))


@fleet_group.command("status")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@registry_option
def status_command(manifest_path, registry_path):
    """Show each bay's steps as the registry records them."""
    manifest = manifest_module.load(manifest_path)
    with Registry(registry_path) as registry:
        rows = Progress(registry, manifest.community).rows()
    if not rows:
        click.echo("no progress recorded for %s yet" % manifest.community)
        return
    for row in rows:
        click.echo("%s\t%s\t%s\t%s\t%s" % (row["bay"], row["step"], row["result"], row["port"] or "-", row["detail"] or ""))
