"""`baysense zerotier ...` through baysense.cli.main against the fakes."""

import json
import logging
import os

import pytest

from baysense.cli import main
from baysense.zerotier.fake import FakeCentral, FakeZeroTierOne

SERVICE_TOKEN = "cliServiceTOKEN00000001"
CENTRAL_TOKEN = "cliCentralTOKEN000000000000002"
NETWORK = "8056c2e21c000001"
CONTROLLER_NETWORK = "1a2b3c4d5e000001"
MEMBER = "abcdef0123"


@pytest.fixture
def zerotier_one():
    with FakeZeroTierOne(SERVICE_TOKEN) as fake:
        fake.host_network(CONTROLLER_NETWORK)
        yield fake


@pytest.fixture
def central():
    with FakeCentral(CENTRAL_TOKEN) as fake:
        fake.add_network(NETWORK)
        yield fake


@pytest.fixture
def environment(zerotier_one, central, tmp_path, monkeypatch):
    """Point every zerotier option at the fakes through the environment."""
    service_token = tmp_path / "authtoken.secret"
    service_token.write_text(SERVICE_TOKEN)
    os.chmod(service_token, 0o600)
    central_token = tmp_path / "central.token"
    central_token.write_text(CENTRAL_TOKEN)
    os.chmod(central_token, 0o600)

    monkeypatch.setenv("BAYSENSE_ZT_SERVICE_URL", zerotier_one.url)
    monkeypatch.setenv("BAYSENSE_ZT_TOKEN_FILE", str(service_token))
    monkeypatch.setenv("BAYSENSE_ZT_CENTRAL_URL", central.url)
    monkeypatch.setenv("BAYSENSE_ZT_CENTRAL_TOKEN_FILE", str(central_token))
    monkeypatch.delenv("ZEROTIER_CENTRAL_TOKEN", raising=False)


def run(capsys, *argv):
    status = main(["zerotier", *argv])
    captured = capsys.readouterr()
    assert SERVICE_TOKEN not in captured.out + captured.err
    assert CENTRAL_TOKEN not in captured.out + captured.err
    return status, captured.out, captured.err


def test_status_prints_node(environment, zerotier_one, capsys):
    status, out, _ = run(capsys, "status")
    assert status == 0
    assert "node %s online" % zerotier_one.node_id in out


def test_networks_table_and_json(environment, zerotier_one, capsys):
    zerotier_one.join_network(NETWORK, status="OK", addresses=("10.147.17.5/24",), name="lot-7")

    status, out, _ = run(capsys, "networks")
    assert status == 0
    assert NETWORK in out
    assert "10.147.17.5/24" in out

    status, out, _ = run(capsys, "networks", "--json")
    assert status == 0
    assert json.loads(out) == [
        {"id": NETWORK, "name": "lot-7", "status": "OK", "type": "PRIVATE", "assigned_addresses": ["10.147.17.5/24"]}
    ]


def test_networks_none_joined(environment, capsys):
    status, out, _ = run(capsys, "networks")
    assert status == 0
    assert "no networks joined" in out


def test_join_then_leave(environment, zerotier_one, capsys):
    status, out, _ = run(capsys, "join", NETWORK)
    assert status == 0
    assert "REQUESTING_CONFIGURATION" in out
    assert "baysense zerotier authorize %s %s" % (NETWORK, zerotier_one.node_id) in out
    assert NETWORK in zerotier_one.networks

    status, out, _ = run(capsys, "leave", NETWORK)
    assert status == 0
    assert NETWORK not in zerotier_one.networks


def test_leave_not_joined_fails(environment, capsys):
    status, _, err = run(capsys, "leave", NETWORK)
    assert status == 1
    assert err.startswith("baysense: ")
    assert "has not joined" in err


def test_join_invalid_id_fails(environment, zerotier_one, capsys):
    status, _, err = run(capsys, "join", "xyz")
    assert status == 1
    assert "'xyz'" in err
    assert zerotier_one.requests == []


def test_authorize_on_controller_by_default(environment, zerotier_one, capsys):
    status, out, _ = run(capsys, "authorize", CONTROLLER_NETWORK, MEMBER, "--name", "gw-7", "--description", "lot 7")
    assert status == 0
    assert "authorized %s on %s" % (MEMBER, CONTROLLER_NETWORK) in out
    assert zerotier_one.controller_member(CONTROLLER_NETWORK, MEMBER)["name"] == "gw-7"


def test_authorize_without_description(environment, zerotier_one, capsys, caplog):
    status, out, err = run(capsys, "authorize", CONTROLLER_NETWORK, MEMBER, "--name", "gw-7")

    assert status == 0, err
    assert "authorized %s on %s" % (MEMBER, CONTROLLER_NETWORK) in out
    assert "does not store" not in caplog.text
    post = [request for request in zerotier_one.requests if request.method == "POST"][0]
    assert "description" not in post.body


def test_authorize_description_on_controller_warns(environment, capsys, caplog):
    status, _, _ = run(capsys, "authorize", CONTROLLER_NETWORK, MEMBER, "--name", "gw-7", "--description", "lot 7")

    assert status == 0
    assert "does not store a member description" in caplog.text


def test_authorize_on_central(environment, central, capsys):
    status, out, _ = run(capsys, "authorize", NETWORK, MEMBER, "--name", "gw-7", "--description", "lot 7", "--central")
    assert status == 0
    assert "(central)" in out
    stored = central.member(NETWORK, MEMBER)
    assert stored["config"]["authorized"] is True
    assert stored["description"] == "lot 7"


def test_authorize_requires_name(environment, capsys):
    status, _, err = run(capsys, "authorize", NETWORK, MEMBER, "--description", "x")
    assert status == 2
    assert "--name" in err


def test_authorize_not_applied_fails(environment, central, capsys):
    central.ignored_member_fields.add("description")
    status, _, err = run(capsys, "authorize", NETWORK, MEMBER, "--name", "gw", "--description", "lot 7", "--central")
    assert status == 1
    assert "did not apply" in err
    assert "description: sent 'lot 7', read back ''" in err


def test_member_json_on_central(environment, capsys):
    run(capsys, "authorize", NETWORK, MEMBER, "--name", "gw", "--description", "d", "--central")
    status, out, _ = run(capsys, "member", NETWORK, MEMBER, "--central", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["authorized"] is True
    assert data["source"] == "central"


def test_member_text_on_controller(environment, capsys):
    run(capsys, "authorize", CONTROLLER_NETWORK, MEMBER, "--name", "gw", "--description", "d")
    status, out, _ = run(capsys, "member", CONTROLLER_NETWORK, MEMBER)
    assert status == 0
    assert "authorized:  yes" in out
    assert "description: - (not stored)" in out


def test_member_unknown_on_central(environment, capsys):
    status, _, err = run(capsys, "member", NETWORK, "0000000001", "--central")
    assert status == 1
    assert "member 0000000001 not found" in err


def test_wrong_central_token_fails_without_leaking(environment, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong.token"
    wrong.write_text("wrongCentralTOKEN999")
    os.chmod(wrong, 0o600)
    status, _, err = run(capsys, "--central-token-file", str(wrong), "member", NETWORK, MEMBER, "--central")
    assert status == 1
    assert "rejected the API token" in err
    assert "wrongCentralTOKEN999" not in err
    assert "wrongCentralTOKEN999" not in caplog.text


def test_options_override_environment(environment, zerotier_one, tmp_path, capsys):
    status, out, _ = run(capsys, "--service-url", zerotier_one.url, "status")
    assert status == 0
    status, _, err = run(capsys, "--service-url", "ftp://example.invalid", "status")
    assert status == 1
    assert "invalid API URL" in err


def test_no_token_option_exists(environment, capsys):
    status, _, err = run(capsys, "--token", SERVICE_TOKEN, "status")
    assert status == 2
    assert "No such option" in err


def test_help_names_token_sources(capsys):
    status = main(["zerotier", "--help"])
    out = capsys.readouterr().out
    assert status == 0
    assert "BAYSENSE_ZT_TOKEN_FILE" in out
    assert "ZEROTIER_CENTRAL_TOKEN" in out
