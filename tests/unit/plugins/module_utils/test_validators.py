"""The shared input checks: what they accept (the property test of test_bad_input.py only shows what they refuse)."""

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreConfigError, validate_store_params


@pytest.mark.parametrize("url", ["https://tenant.styra.com", "http://127.0.0.1:8200", "https://[::1]:8443/api", "https://[fe80::1%25eth0]/",
                                 "https://dpa.example.com:8124/iwc/api/", "https://pam.example.com/SecretServer", "HTTPS://Example.COM",
                                 "https://b\u00fccher.example/", "http://my_host:80/x", "https://host.example.com."])
def test_url_accepts_servers(url):
    assert validators.url(url, "url") == url


def test_url_strips_surrounding_spaces_only():
    assert validators.url("  https://h.example/  ", "url") == "https://h.example/"
    with pytest.raises(ValueError, match="control characters"):
        validators.url("https://h.example/\n", "url")


def test_url_with_query_where_one_belongs():
    assert validators.url("https://app.example/cb?state=1", "finish_uri", query=True)
    with pytest.raises(ValueError, match="fragment"):
        validators.url("https://app.example/cb#x", "finish_uri", query=True)


@pytest.mark.parametrize("url, needle", [("http://[::1", "Invalid IPv6 URL"), ("https://h:0/", "port"), ("https://h:70000/", "port"),
                                         ("https://u:secret@h/", "user name or password"), ("h.example", "must be"),
                                         ("https://h/?a=1", "query"), ("https://h/#f", "fragment"), ("https://a..b/", "host name")])
def test_url_names_the_option_and_the_problem(url, needle):
    with pytest.raises(ValueError) as caught:
        validators.url(url, "store.url")
    assert str(caught.value).startswith("store.url") and needle in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("value, seconds", [("90d", 90 * 86400), ("1h30m", 5400), (45, 45), ("0", 0), ("0s", 0), ("1.5h", 5400)])
def test_duration_accepts(value, seconds):
    assert validators.duration(value, "grace_period") == seconds


@pytest.mark.parametrize("value", ["", " ", "-5", -5, "5x", "1h 30m", "36501d", float("inf"), True, [1]])
def test_duration_refuses(value):
    with pytest.raises(ValueError, match="^grace_period"):
        validators.duration(value, "grace_period")


@pytest.mark.parametrize("value, parsed", [("20%", ("percent", 20.0)), ("0%", ("percent", 0.0)), ("100%", ("percent", 100.0)),
                                           ("7d", ("seconds", 7 * 86400.0))])
def test_rotate_before_accepts(value, parsed):
    assert validators.rotate_before(value) == parsed


@pytest.mark.parametrize("value", ["", "101%", "-1%", "nan%", "abc%", "soon"])
def test_rotate_before_refuses(value):
    with pytest.raises(ValueError, match="^rotate_before"):
        validators.rotate_before(value)


def test_timeouts_and_counts():
    assert validators.timeout(0.5) == 0.5 and validators.timeout("30") == 30.0
    for bad in (0, -5, float("nan"), float("inf"), 86401, "soon", None):
        with pytest.raises(ValueError, match="^timeout"):
            validators.timeout(bad)
    assert validators.count(0, "retries", maximum=100) == 0
    for bad in (-1, 101, True, "3", 1.5):
        with pytest.raises(ValueError, match="^retries"):
            validators.count(bad, "retries", maximum=100)


def test_readable_file(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert validators.readable_file(str(pem), "ca_path") == str(pem)
    assert validators.readable_file(None, "ca_path") is None
    for bad in (str(tmp_path / "missing.pem"), str(tmp_path), ""):
        with pytest.raises(ValueError, match="^ca_path"):
            validators.readable_file(bad, "ca_path")


def test_usernames():
    assert validators.username("CORP\\svc", "username") == "CORP\\svc"
    for bad in ("", "   ", " svc", "svc ", "s\nvc", None, 5):
        with pytest.raises(ValueError, match="^username"):
            validators.username(bad, "username")


def test_long_values_are_cut():
    long = "x" * 10000
    assert validators.shown(long) == "'%s'... (10000 characters)" % ("x" * 60)
    assert validators.shown("short") == "'short'"
    message = validators.cut_long_values("value of state must be one of: a, b, got: %s" % long, {"state": long})
    assert long not in message and "(10000 characters)" in message and len(message) < 200


def test_a_long_secret_is_left_for_ansible_to_mask_whole():
    """Cutting a no_log value would turn it from masked into a visible prefix."""
    secret = "s" * 300
    message = validators.cut_long_values("bad: %s" % secret, {"token": secret, "other": "a" + secret}, keep={secret})
    assert secret in message


def test_shape_error_names_the_option():
    spec = {"role_bindings": {"type": "list", "elements": "dict", "options": {"role_id": {"type": "str"}}},
            "store": {"type": "dict", "options": {"url": {"type": "str"}}}}
    assert validators.shape_error(spec, {"role_bindings": ["SystemOPA"]}).startswith("role_bindings[0] must be a dictionary with role_id")
    assert validators.shape_error(spec, {"role_bindings": [None]}).endswith("got null")
    assert validators.shape_error(spec, {"store": 0}).startswith("store must be a dictionary")
    assert validators.shape_error(spec, {"role_bindings": [{"role_id": "x"}], "store": "url=http://h"}) is None


def test_store_settings(tmp_path, monkeypatch):
    password_file = tmp_path / "pass"
    password_file.write_text("pw\n")
    params = validate_store_params({"backend": "vault", "url": " https://vault.example.com:8200 ", "token": "t"})
    assert params["url"] == "https://vault.example.com:8200"
    validate_store_params({"backend": "file", "file_path": str(tmp_path / "s.vault"), "vault_password_file": str(password_file)})
    validate_store_params({"backend": "file", "file_path": str(tmp_path / "s.vault"), "vault_password": "pw", "prefix": ""})
    for bad, needle in [({"backend": "vault", "url": "http://[::1", "token": "t"}, "store.url"),
                        ({"backend": "vault", "url": "https://v:8200", "token": "t", "timeout": -1}, "store.timeout"),
                        ({"backend": "vault", "url": "https://v:8200", "token": "t", "ca_cert": str(tmp_path / "no.pem")}, "store.ca_cert"),
                        ({"backend": "file", "vault_password_file": str(tmp_path / "nope")}, "store.vault_password_file"),
                        ({"backend": "file", "vault_password": "pw", "prefix": " \n"}, "store.prefix"),
                        ({"backend": "file", "vault_password": "pw", "prefix": "a/../b"}, "store.prefix")]:
        with pytest.raises(StoreConfigError, match=needle.replace(".", r"\.")):
            validate_store_params(bad)


def test_env_fallback_takes_the_first_variable_with_a_value_and_counts_a_blank_one_as_unset(monkeypatch):
    from ansible.module_utils.errors import AnsibleFallbackNotFound
    monkeypatch.setenv("TOKENOPS_T_FIRST", "  ")          # an AWX credential field left empty, or a play's environment: ""
    monkeypatch.setenv("TOKENOPS_T_SECOND", "value")
    assert validators.env_fallback("TOKENOPS_T_FIRST", "TOKENOPS_T_SECOND") == "value"
    monkeypatch.setenv("TOKENOPS_T_SECOND", "")
    with pytest.raises(AnsibleFallbackNotFound):
        validators.env_fallback("TOKENOPS_T_FIRST", "TOKENOPS_T_SECOND", "TOKENOPS_T_UNSET")
