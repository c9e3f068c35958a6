"""Member authorization on the fake controller and fake Central, with read-back checks."""

import logging
import os

import pytest

from baysense.errors import ConfigError
from baysense.zerotier import client as zt_client
from baysense.zerotier.errors import (
    MemberNotUpdatedError,
    ZeroTierAuthError,
    ZeroTierForbiddenError,
    ZeroTierNotFoundError,
    ZeroTierRateLimitError,
    ZeroTierServerError,
)
from baysense.zerotier.fake import FakeCentral, FakeZeroTierOne, coerce_bool, coerce_string
from baysense.zerotier.members import CentralMembers, ControllerMembers, authorize_member

SERVICE_TOKEN = "controllerTOKENsecret01"
CENTRAL_TOKEN = "centralTOKENsecret0000000000002"
CONTROLLER_NETWORK = "1a2b3c4d5e000001"
CENTRAL_NETWORK = "8056c2e21c000001"
MEMBER = "abcdef0123"


@pytest.fixture
def waits():
    return []


@pytest.fixture
def zerotier_one():
    with FakeZeroTierOne(SERVICE_TOKEN) as fake:
        fake.host_network(CONTROLLER_NETWORK, name="site")
        yield fake


@pytest.fixture
def central():
    with FakeCentral(CENTRAL_TOKEN) as fake:
        fake.add_network(CENTRAL_NETWORK, name="site")
        yield fake


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "authtoken.secret"
    path.write_text(SERVICE_TOKEN)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def controller(zerotier_one, token_file, waits):
    return ControllerMembers.connect(zerotier_one.url, token_file, sleep=waits.append)


@pytest.fixture
def central_api(central, monkeypatch, waits):
    monkeypatch.setenv("ZEROTIER_CENTRAL_TOKEN", CENTRAL_TOKEN)
    monkeypatch.delenv("BAYSENSE_ZT_CENTRAL_TOKEN_FILE", raising=False)
    return CentralMembers.connect(central.url, sleep=waits.append)


def test_controller_authorize_sends_typed_values(zerotier_one, controller):
    member = authorize_member(controller, CONTROLLER_NETWORK, MEMBER, "gateway-7", "lot 7 gateway")

    assert member.authorized is True
    assert member.name == "gateway-7"
    posted = zerotier_one.requests_to("/controller/network/%s/member/%s" % (CONTROLLER_NETWORK, MEMBER))[0]
    assert posted.method == "POST"
    assert posted.body["authorized"] is True
    assert posted.body["name"] == "gateway-7"
    assert zerotier_one.controller_member(CONTROLLER_NETWORK, MEMBER)["authorized"] is True


def test_controller_description_not_stored_warns(controller, caplog):
    member = authorize_member(controller, CONTROLLER_NETWORK, MEMBER, "gateway-7", "lot 7 gateway")
    assert member.description is None
    assert "does not store a member description" in caplog.text


def test_controller_without_description_quiet(zerotier_one, controller, caplog):
    member = authorize_member(controller, CONTROLLER_NETWORK, MEMBER, "gateway-7")

    assert member.authorized is True
    posted = zerotier_one.requests_to("/controller/network/%s/member/%s" % (CONTROLLER_NETWORK, MEMBER))[0]
    assert "description" not in posted.body
    assert "does not store" not in caplog.text


def test_central_without_description_keeps_it(central, central_api):
    authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gateway-7", "lot 7 gateway")

    member = authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gateway-8")

    assert member.name == "gateway-8"
    assert member.description == "lot 7 gateway"
    posted = central.requests_to("/api/v1/network/%s/member/%s" % (CENTRAL_NETWORK, MEMBER))
    assert "description" not in [request for request in posted if request.method == "POST"][-1].body


def test_controller_reads_back_after_post(zerotier_one, controller):
    authorize_member(controller, CONTROLLER_NETWORK, MEMBER, "gw", "")
    methods = [request.method for request in zerotier_one.requests]
    assert methods == ["POST", "GET"]


def test_central_authorize_sends_config_authorized(central, central_api):
    member = authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gateway-7", "lot 7 gateway")

    assert (member.authorized, member.name, member.description) == (True, "gateway-7", "lot 7 gateway")
    posted = central.requests_to("/api/v1/network/%s/member/%s" % (CENTRAL_NETWORK, MEMBER))[0]
    assert posted.body == {"name": "gateway-7", "description": "lot 7 gateway", "config": {"authorized": True}}
    assert posted.headers["Authorization"] == "token %s" % CENTRAL_TOKEN
    assert central.member(CENTRAL_NETWORK, MEMBER)["config"]["authorized"] is True


def test_central_ignores_string_authorized(central, central_api):
    # The fake, like Central, ignores a wrongly typed value instead of rejecting it.
    central_api.client.post(
        "/network/%s/member/%s" % (CENTRAL_NETWORK, MEMBER), {"config": {"authorized": "true"}, "name": 7}
    )
    member = central_api.get_member(CENTRAL_NETWORK, MEMBER)
    assert member.authorized is False
    assert member.name == ""


def test_controller_coerces_string_authorized(zerotier_one, controller):
    controller.client.post("/controller/network/%s/member/%s" % (CONTROLLER_NETWORK, MEMBER), {"authorized": "yes"})
    assert controller.get_member(CONTROLLER_NETWORK, MEMBER).authorized is False


@pytest.mark.parametrize("value, expected", [(True, True), ("true", True), ("T", True), ("1", True), ("yes", False), ("", False), (0.5, False), (2, True), (None, False)])
def test_fake_controller_bool_coercion(value, expected):
    assert coerce_bool(value) is expected


def test_fake_controller_string_coercion():
    assert coerce_string(7) == "7"
    assert coerce_string(None) == ""


def test_central_value_not_applied_raises(central, central_api):
    central.ignored_member_fields.add("name")
    with pytest.raises(MemberNotUpdatedError) as caught:
        authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gateway-7", "lot 7 gateway")
    error = caught.value
    assert error.mismatches == ("name: sent 'gateway-7', read back ''",)
    assert MEMBER in str(error)
    assert CENTRAL_TOKEN not in str(error)


def test_controller_authorized_not_applied_raises(zerotier_one, controller):
    zerotier_one.ignored_member_fields.add("authorized")
    with pytest.raises(MemberNotUpdatedError) as caught:
        authorize_member(controller, CONTROLLER_NETWORK, MEMBER, "gw", "")
    assert caught.value.mismatches == ("authorized: sent true, read back false",)


@pytest.mark.parametrize("name, description", [(7, "text"), ("gw", 7), (True, "x"), (None, "x")])
def test_authorize_rejects_non_text_values(central, central_api, name, description):
    with pytest.raises(ConfigError, match="must be text"):
        authorize_member(central_api, CENTRAL_NETWORK, MEMBER, name, description)
    assert central.requests == []


@pytest.mark.parametrize("network_id, member_id, bad", [("8056c2e21c00000", MEMBER, "8056c2e21c00000"), (CENTRAL_NETWORK, "abcdef012", "abcdef012"), (CENTRAL_NETWORK, "abcdefg123", "abcdefg123")])
def test_authorize_rejects_bad_ids(central, central_api, network_id, member_id, bad):
    with pytest.raises(ConfigError) as caught:
        authorize_member(central_api, network_id, member_id, "gw", "")
    assert repr(bad) in str(caught.value)
    assert central.requests == []


def test_central_unknown_network(central_api):
    with pytest.raises(ZeroTierNotFoundError) as caught:
        central_api.get_member("8056c2e21c0000ff", MEMBER)
    assert "network 8056c2e21c0000ff not found" in str(caught.value)
    assert "--controller" in caught.value.hint


def test_central_unknown_member(central_api):
    with pytest.raises(ZeroTierNotFoundError) as caught:
        central_api.get_member(CENTRAL_NETWORK, "0000000001")
    assert "member 0000000001 not found on network %s" % CENTRAL_NETWORK in str(caught.value)


def test_controller_unknown_network_on_authorize(controller):
    with pytest.raises(ZeroTierNotFoundError) as caught:
        authorize_member(controller, "8056c2e21c000001", MEMBER, "gw", "")
    assert "network 8056c2e21c000001 not found" in str(caught.value)
    assert "--central" in caught.value.hint


def test_central_forbidden_network(central, central_api):
    central.forbidden_networks.add(CENTRAL_NETWORK)
    with pytest.raises(ZeroTierForbiddenError) as caught:
        central_api.get_member(CENTRAL_NETWORK, MEMBER)
    assert "owns the network" in caught.value.hint


def test_central_bad_token(central, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ZEROTIER_CENTRAL_TOKEN", "revokedCentralToken0001")
    api = CentralMembers.connect(central.url)
    with pytest.raises(ZeroTierAuthError) as caught:
        authorize_member(api, CENTRAL_NETWORK, MEMBER, "gw", "")
    assert "ZEROTIER_CENTRAL_TOKEN" in caught.value.hint
    assert "revokedCentralToken0001" not in str(caught.value)
    assert "revokedCentralToken0001" not in caplog.text


def test_central_rate_limit_then_success(central, central_api, waits):
    central.fail_next(429, retry_after=2)
    member = authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gw", "d")
    assert member.authorized is True
    assert waits == [2.0]


def test_central_rate_limit_persists(central, central_api, waits):
    central.fail_next(429, times=zt_client.MAX_ATTEMPTS, retry_after=1)
    with pytest.raises(ZeroTierRateLimitError):
        authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gw", "d")
    assert central.member(CENTRAL_NETWORK, MEMBER) is None


def test_controller_server_error_persists(zerotier_one, controller, waits, caplog):
    caplog.set_level(logging.DEBUG)
    zerotier_one.fail_next(500, times=zt_client.MAX_ATTEMPTS)
    with pytest.raises(ZeroTierServerError) as caught:
        authorize_member(controller, CONTROLLER_NETWORK, MEMBER, "gw", "")
    assert len(waits) == zt_client.MAX_ATTEMPTS - 1
    assert SERVICE_TOKEN not in str(caught.value)
    assert SERVICE_TOKEN not in caplog.text


def test_member_to_json_fields(central_api):
    authorize_member(central_api, CENTRAL_NETWORK, MEMBER, "gw", "d")
    data = central_api.get_member(CENTRAL_NETWORK, MEMBER).to_json()
    assert data == {
        "network_id": CENTRAL_NETWORK,
        "member_id": MEMBER,
        "authorized": True,
        "name": "gw",
        "description": "d",
        "ip_assignments": [],
        "source": "central",
    }
