"""The CLI layer: exit statuses and error messages."""

import click

from baysense import cli


def test_command_exit_status_returned(monkeypatch):
    @click.command("failing")
    def failing():
        raise click.exceptions.Exit(3)

    monkeypatch.setitem(cli.COMMANDS, "failing", "cli:_test_failing")
    monkeypatch.setattr(cli, "_test_failing", failing, raising=False)
    assert cli.main(["failing"]) == 3


def test_user_error_message_and_status(capsys):
    status = cli.main(["vboard", "--board", "no-such-board"])
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("baysense: board definition not found (no-such-board)")
    assert "virtual" in error  # the known boards are listed


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    output = capsys.readouterr().out
    for command in ("vboard", "deploy", "provision", "gateway", "status", "demo", "flash", "fleet", "replay", "zerotier"):
        assert command in output
