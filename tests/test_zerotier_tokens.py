"""Token loading for the ZeroTier clients: files, environment, permissions, secrecy."""

import os

import pytest

from baysense.zerotier import tokens
from baysense.zerotier.errors import TokenError
from baysense.zerotier.tokens import Secret, load_central_token, load_service_token, read_token_file

TOKEN = "tok3nForTests0nly7q2w9x"


def write_token(path, text=TOKEN + "\n", mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No token variables, an empty home, and a system token path that does not exist."""
    for name in (tokens.ENV_SERVICE_TOKEN_FILE, tokens.ENV_CENTRAL_TOKEN_FILE, tokens.ENV_CENTRAL_TOKEN):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(tokens, "SYSTEM_TOKEN_FILE", tmp_path / "var" / "authtoken.secret")
    return home


def test_secret_hides_value_in_str_and_repr():
    secret = Secret(TOKEN)
    assert TOKEN not in str(secret)
    assert TOKEN not in repr(secret)
    assert TOKEN not in "%s %r" % (secret, secret)
    assert TOKEN not in repr([secret])
    assert secret.reveal() == TOKEN


def test_secret_redacts_text():
    assert Secret(TOKEN).redact("echo %s back" % TOKEN) == "echo *** back"


def test_read_token_file_strips_newline(tmp_path):
    secret = read_token_file(write_token(tmp_path / "token"))
    assert secret.reveal() == TOKEN


def test_token_file_readable_by_group_rejected(tmp_path):
    path = write_token(tmp_path / "token", mode=0o640)
    with pytest.raises(TokenError) as caught:
        read_token_file(path)
    assert "chmod 600" in str(caught.value)
    assert str(path) in str(caught.value)


def test_empty_token_file_rejected(tmp_path):
    with pytest.raises(TokenError, match="empty"):
        read_token_file(write_token(tmp_path / "token", text="\n"))


@pytest.mark.parametrize("text", ["abc def", "abc\r\nX-Other: 1", "abc\x00def", "line1\nline2"])
def test_token_with_header_breaking_characters_rejected(tmp_path, text):
    with pytest.raises(TokenError) as caught:
        read_token_file(write_token(tmp_path / "token", text=text))
    assert text.strip() not in str(caught.value)


def test_oversized_token_file_rejected(tmp_path):
    with pytest.raises(TokenError, match="larger than"):
        read_token_file(write_token(tmp_path / "token", text="a" * (tokens.MAX_TOKEN_BYTES + 1)))


def test_service_token_from_environment_file(clean_environment, tmp_path, monkeypatch):
    path = write_token(tmp_path / "mine")
    monkeypatch.setenv(tokens.ENV_SERVICE_TOKEN_FILE, str(path))
    assert load_service_token().reveal() == TOKEN


def test_service_token_argument_overrides_environment(clean_environment, tmp_path, monkeypatch):
    monkeypatch.setenv(tokens.ENV_SERVICE_TOKEN_FILE, str(tmp_path / "missing"))
    path = write_token(tmp_path / "given", text="given-token")
    assert load_service_token(path).reveal() == "given-token"


def test_service_token_missing_named_file(clean_environment, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(TokenError) as caught:
        load_service_token(missing)
    assert str(missing) in str(caught.value)
    assert tokens.ENV_SERVICE_TOKEN_FILE in str(caught.value)


def test_service_token_prefers_system_file(clean_environment):
    tokens.SYSTEM_TOKEN_FILE.parent.mkdir()
    write_token(tokens.SYSTEM_TOKEN_FILE, text="system-token")
    write_token(clean_environment / ".zeroTierOneAuthToken", text="user-token")
    assert load_service_token().reveal() == "system-token"


def test_service_token_falls_back_to_user_copy(clean_environment):
    write_token(clean_environment / ".zeroTierOneAuthToken", text="user-token")
    assert load_service_token().reveal() == "user-token"


def test_service_token_not_found_names_places(clean_environment):
    with pytest.raises(TokenError) as caught:
        load_service_token()
    message = str(caught.value)
    assert str(tokens.SYSTEM_TOKEN_FILE) in message
    assert ".zeroTierOneAuthToken" in message
    assert tokens.ENV_SERVICE_TOKEN_FILE in message


def test_service_token_unreadable_system_file(clean_environment, monkeypatch):
    # Tests may run as root, where file modes do not stop reads, so the denial is simulated.
    real_read = tokens.read_token_file

    def read_as_other_user(path):
        if path == tokens.SYSTEM_TOKEN_FILE:
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(tokens, "read_token_file", read_as_other_user)
    with pytest.raises(TokenError) as caught:
        load_service_token()
    assert "not readable" in str(caught.value)
    assert "chmod 600" in str(caught.value)


def test_central_token_from_environment(clean_environment, monkeypatch):
    monkeypatch.setenv(tokens.ENV_CENTRAL_TOKEN, "  central-token \n")
    assert load_central_token().reveal() == "central-token"


def test_central_token_file_overrides_environment(clean_environment, tmp_path, monkeypatch):
    monkeypatch.setenv(tokens.ENV_CENTRAL_TOKEN, "from-environment")
    monkeypatch.setenv(tokens.ENV_CENTRAL_TOKEN_FILE, str(write_token(tmp_path / "central", text="from-file")))
    assert load_central_token().reveal() == "from-file"


def test_central_token_missing_says_where_to_put_it(clean_environment):
    with pytest.raises(TokenError) as caught:
        load_central_token()
    assert tokens.ENV_CENTRAL_TOKEN in str(caught.value)
    assert tokens.ENV_CENTRAL_TOKEN_FILE in str(caught.value)


def test_central_token_with_space_rejected_without_echo(clean_environment, monkeypatch):
    monkeypatch.setenv(tokens.ENV_CENTRAL_TOKEN, "abc defsecretpart")
    with pytest.raises(TokenError) as caught:
        load_central_token()
    assert "defsecretpart" not in str(caught.value)
