"""`baysense zerotier fake`: the loopback fake as a command, driven by `baysense zerotier`."""

import json
import subprocess
import sys

import pytest

from baysense.cli import main
from baysense.errors import ConfigError
from baysense.zerotier.fake_cli import parse_listen, serve_fake

NETWORK = "8056c2e21c000001"
GATEWAY_MEMBER = "a1b2c3d4e5"
FAKE_NODE = "0123456789"
TOKEN = "fake-token-for-tests"
# Seconds to wait for the command's first line and for it to stop.
START_TIMEOUT_S = 20
COMMAND = [sys.executable, "-m", "baysense.cli", "zerotier", "fake"]


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "zt.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def fake_process(token_file):
    """Start the command on a free loopback port; yield (process, url); stop it with SIGTERM."""
    process = subprocess.Popen(
        [*COMMAND, "--token-file", str(token_file), "--network", NETWORK, "--join", NETWORK, "--node-id", FAKE_NODE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("url: http://127.0.0.1:"), first + process.stderr.read()
        yield process, first.split(": ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(START_TIMEOUT_S)


def test_fake_command_serves_zerotier_commands(fake_process, token_file, capsys):
    process, url = fake_process
    zerotier = ["zerotier", "--service-url", url, "--token-file", str(token_file)]

    assert main(zerotier + ["status"]) == 0
    status = capsys.readouterr().out
    assert FAKE_NODE in status

    assert main(zerotier + ["networks", "--json"]) == 0
    [network] = json.loads(capsys.readouterr().out)
    assert network["id"] == NETWORK
    assert "127.0.0.1/8" in json.dumps(network)

    assert main(zerotier + ["authorize", NETWORK, GATEWAY_MEMBER, "--name", "gw-north", "--description", "North lot"]) == 0
    capsys.readouterr()
    assert main(zerotier + ["member", NETWORK, GATEWAY_MEMBER, "--json"]) == 0
    member = json.loads(capsys.readouterr().out)
    assert member["authorized"] is True
    assert member["name"] == "gw-north"

    process.terminate()
    assert process.wait(START_TIMEOUT_S) == 0
    output = process.stdout.read() + process.stderr.read()
    assert "network: %s (hosted)" % NETWORK in output
    assert "joined: %s at 127.0.0.1/8" % NETWORK in output
    assert TOKEN not in output


def test_fake_command_wrong_token_rejected(fake_process, tmp_path, capsys):
    _, url = fake_process
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)

    assert main(["zerotier", "--service-url", url, "--token-file", str(wrong), "status"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("baysense: ")
    assert "token" in error


def test_listen_rejects_remote_address():
    assert parse_listen("127.0.0.1:9993") == ("127.0.0.1", 9993)
    assert parse_listen("localhost:0") == ("127.0.0.1", 0)
    with pytest.raises(ConfigError) as raised:
        parse_listen("0.0.0.0:9993")
    assert str(raised.value).startswith("--listen 0.0.0.0:9993 is not a loopback address: ")
    assert "--allow-remote" in str(raised.value)
    assert parse_listen("0.0.0.0:9993", allow_remote=True) == ("0.0.0.0", 9993)


@pytest.mark.parametrize("text", ["9993", ":9993", "127.0.0.1:port", "127.0.0.1:70000", "myhost:9993"])
def test_listen_rejects_malformed_address(text):
    with pytest.raises(ConfigError):
        parse_listen(text)


def test_central_fake_has_no_joined_networks():
    with pytest.raises(ConfigError, match="--join is for the local service, which --api central does not serve"):
        serve_fake(TOKEN, api="central", networks=[NETWORK], joined=[NETWORK])

    central = serve_fake(TOKEN, api="central", networks=[NETWORK])
    try:
        assert central.url.startswith("http://127.0.0.1:")
        assert central.url.endswith("/api/v1")
    finally:
        central.stop()


def test_fake_command_rejects_open_token_file(token_file):
    token_file.chmod(0o644)
    result = subprocess.run(
        [*COMMAND, "--token-file", str(token_file)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert result.returncode == 1
    assert "baysense: token file %s is readable by group or others (mode 644)" % token_file in result.stderr
    assert "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr
