"""resolve_listen: HOST:PORT checks, and zt:NETWORK_ID:PORT through the fake local service."""

import os

import pytest

from baysense.errors import ConfigError
from baysense.zerotier.errors import NetworkNotReadyError
from baysense.zerotier.fake import FakeZeroTierOne
from baysense.zerotier.listen import resolve_listen
from baysense.zerotier.service import LocalService

TOKEN = "listenTOKENsecret000042"
NETWORK = "8056c2e21c000001"
NODE = "0deadbeef1"


@pytest.fixture
def fake():
    with FakeZeroTierOne(TOKEN, node_id=NODE) as server:
        yield server


@pytest.fixture
def service(fake, tmp_path):
    path = tmp_path / "authtoken.secret"
    path.write_text(TOKEN)
    os.chmod(path, 0o600)
    return LocalService.connect(fake.url, path)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0.0.0.0:5683", ("0.0.0.0", 5683)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("gateway.local:65535", ("gateway.local", 65535)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:5683", ("::1", 5683)),
        ("[fd00::5]:9000", ("fd00::5", 9000)),
        ("  10.0.0.2:5683 ", ("10.0.0.2", 5683)),
    ],
)
def test_host_port_forms(spec, expected):
    assert resolve_listen(spec) == expected


@pytest.mark.parametrize(
    "spec, named",
    [
        ("", "''"),
        ("0.0.0.0", "'0.0.0.0'"),
        (":5683", "':5683'"),
        ("0.0.0.0:0", "'0.0.0.0:0'"),
        ("0.0.0.0:65536", "'0.0.0.0:65536'"),
        ("0.0.0.0:http", "'http'"),
        ("0.0.0.0:-1", "'-1'"),
        ("::1:5683", "'::1:5683'"),
        ("[::1:5683", "'[::1:5683'"),
        ("[nothex]:5683", "'nothex'"),
        ("bad_host!:5683", "'bad_host!'"),
        ("0.0.0.0:５６８３", "'５６８３'"),
    ],
)
def test_host_port_errors_name_value(spec, named):
    with pytest.raises(ConfigError) as caught:
        resolve_listen(spec)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    "spec, named",
    [
        ("zt:8056c2e21c00000:5683", "'8056c2e21c00000'"),
        ("zt:8056c2e21c00000g:5683", "'8056c2e21c00000g'"),
        ("zt:%s:0" % NETWORK, "zt:%s:0" % NETWORK),
        ("zt:%s:70000" % NETWORK, "zt:%s:70000" % NETWORK),
        ("zt:%s" % NETWORK, "'zt:%s'" % NETWORK),
        ("zt:%s:5683:1" % NETWORK, "'zt:%s:5683:1'" % NETWORK),
    ],
)
def test_zt_spec_errors_name_value(spec, named, fake, service):
    with pytest.raises(ConfigError) as caught:
        resolve_listen(spec, service)
    assert named in str(caught.value)
    assert fake.requests == []


def test_zt_resolves_assigned_address(fake, service):
    fake.join_network(NETWORK, status="OK", addresses=("10.147.17.5/24",))
    assert resolve_listen("zt:%s:5683" % NETWORK, service) == ("10.147.17.5", 5683)


def test_zt_prefix_and_id_case_insensitive(fake, service):
    fake.join_network(NETWORK, status="OK", addresses=("10.147.17.5/24",))
    assert resolve_listen("ZT:%s:5683" % NETWORK.upper(), service) == ("10.147.17.5", 5683)


def test_zt_prefers_ipv4(fake, service):
    fake.join_network(NETWORK, status="OK", addresses=("fd80:56c2:e21c::5/88", "10.147.17.5/24"))
    assert resolve_listen("zt:%s:5683" % NETWORK, service) == ("10.147.17.5", 5683)


def test_zt_ipv6_only(fake, service):
    fake.join_network(NETWORK, status="OK", addresses=("fd80:56c2:e21c::5/88",))
    assert resolve_listen("zt:%s:5683" % NETWORK, service) == ("fd80:56c2:e21c::5", 5683)


def test_zt_not_joined(service):
    with pytest.raises(NetworkNotReadyError) as caught:
        resolve_listen("zt:%s:5683" % NETWORK, service)
    assert "not joined" in str(caught.value)
    assert "baysense zerotier join %s" % NETWORK in caught.value.hint


def test_zt_access_denied_names_node(fake, service):
    fake.join_network(NETWORK, status="ACCESS_DENIED", addresses=())
    with pytest.raises(NetworkNotReadyError) as caught:
        resolve_listen("zt:%s:5683" % NETWORK, service)
    assert "not authorized" in str(caught.value)
    assert "ACCESS_DENIED" in str(caught.value)
    assert "baysense zerotier authorize %s %s" % (NETWORK, NODE) in caught.value.hint


def test_zt_requesting_configuration(fake, service):
    service.join(NETWORK)
    with pytest.raises(NetworkNotReadyError) as caught:
        resolve_listen("zt:%s:5683" % NETWORK, service)
    assert "REQUESTING_CONFIGURATION" in str(caught.value)
    assert NODE in caught.value.hint


@pytest.mark.parametrize("status", ["NOT_FOUND", "PORT_ERROR", "CLIENT_TOO_OLD", "AUTHENTICATION_REQUIRED", "SOMETHING_NEW"])
def test_zt_other_statuses_refused(fake, service, status):
    fake.join_network(NETWORK, status=status, addresses=("10.147.17.5/24",))
    with pytest.raises(NetworkNotReadyError) as caught:
        resolve_listen("zt:%s:5683" % NETWORK, service)
    assert status in str(caught.value)
    assert NETWORK in str(caught.value)


def test_zt_ok_without_address(fake, service):
    fake.join_network(NETWORK, status="OK", addresses=())
    with pytest.raises(NetworkNotReadyError) as caught:
        resolve_listen("zt:%s:5683" % NETWORK, service)
    assert "no IP address" in str(caught.value)
    assert "auto-assign" in caught.value.hint


def test_zt_skips_invalid_address(fake, service, caplog):
    fake.join_network(NETWORK, status="OK", addresses=("garbage", "10.147.17.9/24"))
    assert resolve_listen("zt:%s:5683" % NETWORK, service) == ("10.147.17.9", 5683)
    assert "'garbage'" in caplog.text


def test_zt_default_service_from_environment(fake, service, tmp_path, monkeypatch):
    fake.join_network(NETWORK, status="OK", addresses=("10.147.17.5/24",))
    monkeypatch.setenv("BAYSENSE_ZT_SERVICE_URL", fake.url)
    monkeypatch.setenv("BAYSENSE_ZT_TOKEN_FILE", str(tmp_path / "authtoken.secret"))
    assert resolve_listen("zt:%s:5683" % NETWORK) == ("10.147.17.5", 5683)
