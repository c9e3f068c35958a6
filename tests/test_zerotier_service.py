"""LocalService against the fake zerotier-one: status, networks, join and leave."""

import logging
import os

import pytest

from baysense.errors import ConfigError
from baysense.zerotier.errors import ZeroTierAuthError, ZeroTierNotFoundError
from baysense.zerotier.fake import FakeZeroTierOne
from baysense.zerotier.service import LocalService

TOKEN = "serviceTOKENnotForLogs77"
NETWORK = "8056c2e21c000001"


@pytest.fixture
def fake():
    with FakeZeroTierOne(TOKEN, node_id="0deadbeef1") as server:
        yield server


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "authtoken.secret"
    path.write_text(TOKEN)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def service(fake, token_file):
    return LocalService.connect(fake.url, token_file, sleep=lambda seconds: None)


def test_status_reports_address_and_online(service):
    status = service.status()
    assert status.address == "0deadbeef1"
    assert status.online is True
    assert status.version == "1.14.2"


def test_status_offline_node(fake, service):
    fake.online = False
    assert service.status().online is False


def test_networks_empty(service):
    assert service.networks() == []


def test_networks_lists_joined_with_addresses(fake, service):
    fake.join_network("8056c2e21c000002", status="ACCESS_DENIED", addresses=())
    fake.join_network(NETWORK, status="OK", addresses=("10.147.17.5/24", "fd00::5/88"), name="lot-7")

    networks = service.networks()
    assert [network.id for network in networks] == [NETWORK, "8056c2e21c000002"]
    assert networks[0].status == "OK"
    assert networks[0].name == "lot-7"
    assert networks[0].assigned_addresses == ("10.147.17.5/24", "fd00::5/88")
    assert networks[1].assigned_addresses == ()


def test_join_posts_and_returns_state(fake, service):
    network = service.join(NETWORK.upper())
    assert network.id == NETWORK
    assert network.status == "REQUESTING_CONFIGURATION"
    assert fake.requests_to("/network/%s" % NETWORK)[0].method == "POST"
    assert NETWORK in fake.networks


def test_join_invalid_id_sends_nothing(fake, service):
    with pytest.raises(ConfigError) as caught:
        service.join("8056c2e21c")
    assert "'8056c2e21c'" in str(caught.value)
    assert fake.requests == []


def test_network_not_joined_says_join(service):
    with pytest.raises(ZeroTierNotFoundError) as caught:
        service.network(NETWORK)
    assert "has not joined" in str(caught.value)
    assert "baysense zerotier join %s" % NETWORK in caught.value.hint


def test_leave_deletes(fake, service):
    fake.join_network(NETWORK)
    service.leave(NETWORK)
    assert NETWORK not in fake.networks
    assert fake.requests_to("/network/%s" % NETWORK)[-1].method == "DELETE"


def test_leave_not_joined(service):
    with pytest.raises(ZeroTierNotFoundError, match="cannot leave"):
        service.leave(NETWORK)


def test_bad_token_never_logged(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong"
    wrong.write_text("wrongSECRETvalue99")
    os.chmod(wrong, 0o600)
    service = LocalService.connect(fake.url, wrong)
    with pytest.raises(ZeroTierAuthError) as caught:
        service.status()
    assert "wrongSECRETvalue99" not in str(caught.value)
    assert "wrongSECRETvalue99" not in caplog.text
    assert TOKEN not in caplog.text


def test_url_from_environment(fake, token_file, monkeypatch):
    monkeypatch.setenv("BAYSENSE_ZT_SERVICE_URL", fake.url)
    assert LocalService.connect(token_file=token_file).status().address == "0deadbeef1"
