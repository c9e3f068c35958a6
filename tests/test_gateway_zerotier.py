"""`baysense gateway --listen zt:NWID:PORT` against a fake ZeroTier local service."""

import os
import socket
import subprocess
import sys

import pytest

from baysense.zerotier.fake import FakeZeroTierOne

TOKEN = "gatewayTOKENsecret0007"
NETWORK = "8056c2e21c000001"
NODE = "0deadbeef1"
START_TIMEOUT_S = 30


@pytest.fixture
def fake():
    with FakeZeroTierOne(TOKEN, node_id=NODE) as server:
        yield server


@pytest.fixture
def environment(fake, tmp_path):
    token_file = tmp_path / "authtoken.secret"
    token_file.write_text(TOKEN)
    os.chmod(token_file, 0o600)
    return dict(
        os.environ,
        BAYSENSE_ZT_SERVICE_URL=fake.url,
        BAYSENSE_ZT_TOKEN_FILE=str(token_file),
        BAYSENSE_REGISTRY=str(tmp_path / "registry.db"),
    )


def free_udp_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def run_gateway(environment, tmp_path, port=4700):
    listen = "zt:%s:%d" % (NETWORK, port)
    command = [sys.executable, "-m", "baysense.cli", "gateway", "--listen", listen, "--db", str(tmp_path / "gw.db")]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_binds_to_network_address(fake, environment, tmp_path):
    # A loopback address replaces the ZeroTier address, so the test binds nothing else.
    fake.join_network(NETWORK, addresses=("127.0.0.2/8",))
    port = free_udp_port("127.0.0.2")
    process = run_gateway(environment, tmp_path, port)
    try:
        line = process.stdout.readline()
        assert line.strip() == "listening: udp://127.0.0.2:%d" % port
    finally:
        process.terminate()
        process.wait(START_TIMEOUT_S)


def test_refuses_unauthorized_network(fake, environment, tmp_path):
    fake.join_network(NETWORK, status="ACCESS_DENIED", addresses=())
    process = run_gateway(environment, tmp_path)
    _, error = process.communicate(timeout=START_TIMEOUT_S)
    assert process.returncode == 1
    assert "not authorized" in error
    assert NODE in error
    assert "baysense zerotier authorize" in error
    assert TOKEN not in error


def test_refuses_network_not_joined(environment, tmp_path):
    process = run_gateway(environment, tmp_path)
    _, error = process.communicate(timeout=START_TIMEOUT_S)
    assert process.returncode == 1
    assert NETWORK in error
