"""The shipped AWX credential types are definitions AWX accepts, and what they inject is what the collection reads.

AWX's own validation (tests/fixtures/awx.py follows awx/main/fields.py) runs on each type; the
injectors are rendered as AWX renders them (a Jinja sandbox, empty fields as empty strings) and the
result is fed to the store's own argument validation.
"""

import copy
import json
import os
import re
import stat

import pytest

from tests.fixtures import awx

TYPES = awx.load_types()
PRODUCTS_AND_STORES = {"das", "dpa", "secretserver", "openpayments", "store_vault", "store_file", "pushgateway"}
README = (awx.REPO / "README.md").read_text()


def test_one_type_per_product_and_store_with_unique_names():
    assert set(TYPES) == PRODUCTS_AND_STORES
    names = [(t["name"], t["kind"]) for t in TYPES.values()]
    assert len(set(names)) == len(names)    # AWX: (name, kind) is unique
    assert all(t["name"].startswith("tokenops.rotation: ") and t["description"] for t in TYPES.values())


def test_the_file_store_type_describes_the_store_as_it_is():
    """The file store is a folder with one ansible-vault file per entry (store_file.py), not one ansible-vault file."""
    from ansible_collections.tokenops.rotation.plugins.doc_fragments import store as fragment
    assert "a folder with one C(ansible-vault) file per entry" in " ".join(fragment.ModuleDocFragment.DOCUMENTATION.split())
    description = TYPES["store_file"]["description"]
    assert "a folder with one ansible-vault file per token" in description and "(one ansible-vault file)" not in description


@pytest.mark.parametrize("stem", sorted(PRODUCTS_AND_STORES))
def test_awx_accepts_the_type(stem):
    assert awx.problems(TYPES[stem]) == []


@pytest.mark.parametrize("stem", sorted(PRODUCTS_AND_STORES))
def test_every_field_is_injected_and_no_secret_goes_to_extra_vars(stem):
    ctype = TYPES[stem]
    injectors = ctype["injectors"]
    # AWX shows extra vars in the job's output: nothing of ours is injected that way.
    assert "extra_vars" not in injectors
    templates = " ".join(list(injectors.get("env", {}).values()) + list(injectors.get("file", {}).values()))
    used = set(re.findall(r"\b([a-z_]+)\b", templates))
    assert set(awx.fields_of(ctype)) <= used, "fields no injector uses"
    assert awx.secret_fields(ctype), "a credential type without a secret"


@pytest.mark.parametrize("stem", sorted(PRODUCTS_AND_STORES))
def test_no_field_is_shadowed_by_a_jinja_global(stem):
    """An unset field named like a Jinja global (namespace, range, ...) renders as that global, not as ''."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    assert not set(awx.fields_of(TYPES[stem])) & set(ImmutableSandboxedEnvironment().globals)


def test_every_injected_variable_is_read_by_the_collection():
    """An env fallback of a module or lookup: the modules read each variable themselves.

    Never a lookup('env', ...) into a module option: module arguments are written into the AnsiballZ payload on
    disk, which a killed job leaves behind (tests/integration/test_payload_secrets.py).
    """
    fallbacks = awx.env_fallbacks_in_plugins()
    assert {"STYRA_DAS_TOKEN", "STYRA_DAS_REFRESHER_SECRET", "DPA_REFRESH_TOKEN", "TSS_PASSWORD", "VAULT_TOKEN",
            "OPEN_PAYMENTS_PRIVATE_KEY_PATH"} <= fallbacks
    for stem, ctype in TYPES.items():
        for name in ctype["injectors"].get("env", {}):
            assert name in fallbacks, "%s injects %s, which nothing reads" % (stem, name)
            assert "lookup('env', '%s')" % name not in README and "'%s')" % name not in json.dumps(ctype["inputs"]), \
                "%s: %s is advised through lookup('env', ...), which makes it a module argument" % (stem, name)


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t["injectors"]["env"].update(X="{{ no_such_field }}"), "undefined field"),
    (lambda t: t["injectors"]["env"].update(ANSIBLE_VAULT_PASSWORD_FILE="{{ store_file }}"), "ANSIBLE_VAULT_PASSWORD_FILE"),
    (lambda t: t["injectors"]["env"].update(PATH="{{ store_file }}"), "PATH is not allowed"),
    (lambda t: t["injectors"]["file"].update(template="{{ vault_password }}"), "multi-file syntax"),
    (lambda t: t["injectors"]["env"].update(X="{{ tower.filename.nope }}"), "undefined field"),
    (lambda t: t["inputs"]["fields"].append({"id": "store_file", "label": "again"}), "unique"),
    (lambda t: t["inputs"]["fields"].append({"id": "tower", "label": "Tower"}), "reserved"),
    (lambda t: t["inputs"]["fields"].append({"id": "flag", "label": "Flag", "type": "boolean", "secret": True}), "not allowed for boolean"),
    (lambda t: t["inputs"]["required"].append("nope"), "no field"),
    (lambda t: t["inputs"]["fields"][0].update(id="1bad"), "does not match"),
    (lambda t: t.update(kind="ssh"), "kind"),
])
def test_the_validation_catches_what_awx_refuses(mutation, message):
    ctype = copy.deepcopy(TYPES["store_file"])
    mutation(ctype)
    assert any(message in p for p in awx.problems(ctype)), awx.problems(ctype)


def test_injection_as_awx_does_it(tmp_path):
    """Env injectors carry the secret; file injectors write it to a 0600 file whose path the env names."""
    key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
    inputs = {"client_wallet_address": "https://wallet.example/client", "key_id": "k1", "private_key": key}
    assert awx.input_problems(TYPES["openpayments"], inputs) == []
    injected = awx.inject(TYPES["openpayments"], inputs, tmp_path)
    path = injected.env["OPEN_PAYMENTS_PRIVATE_KEY_PATH"]
    assert os.path.dirname(path) == str(tmp_path / "env")
    assert open(path).read() == key + "\n"     # AWX ends an ssh_private_key field with a newline
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert injected.env["OPEN_PAYMENTS_KEY_ID"] == "k1" and injected.args == []

    injected = awx.inject(TYPES["das"], {"api_token": "s3cret"}, tmp_path)
    assert injected.env == {"STYRA_DAS_TOKEN": "s3cret", "STYRA_DAS_REFRESHER_SECRET": ""}
    assert injected.safe_env["STYRA_DAS_TOKEN"] == "**********"    # what AWX keeps in the job's record


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("VAULT_", "TOKENOPS_", "ANSIBLE_VAULT")):
            monkeypatch.delenv(name)
    return monkeypatch


# A field left empty is injected as an empty variable, which the modules take as not given (validators.env_fallback).
@pytest.mark.parametrize("inputs, expected", [
    ({"url": "https://bao.example:8200", "token": "t0ken"},
     {"auth_method": "token", "token": "t0ken", "namespace": None}),
    ({"url": "https://bao.example:8200", "auth_method": "approle", "role_id": "r", "secret_id": "s", "vault_namespace": "team/a"},
     {"auth_method": "approle", "role_id": "r", "secret_id": "s", "token": None, "namespace": "team/a"}),
    ({"url": "https://bao.example:8200", "auth_method": "", "token": "t0ken"},      # saved empty: AWX takes the first choice
     {"auth_method": "token"}),
])
def test_vault_store_injection_passes_the_store_argument_spec(tmp_path, clean_env, inputs, expected):
    from ansible_collections.tokenops.rotation.plugins.module_utils.store import resolve_store_params

    for name, value in awx.inject(TYPES["store_vault"], inputs, tmp_path).env.items():
        clean_env.setenv(name, value)
    params = resolve_store_params({"backend": "vault"})
    assert params["url"] == "https://bao.example:8200" and not params["ca_cert"]
    assert {k: params[k] for k in expected} == expected


def test_vault_store_ca_certificate_reaches_the_store(tmp_path, clean_env):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    env = awx.inject(TYPES["store_vault"], {"url": "https://bao.example:8200", "token": "t", "ca_cert": pem}, tmp_path).env
    assert open(env["VAULT_CACERT"]).read() == pem


def test_file_store_injection_gives_the_password_file_and_the_store_path(tmp_path, clean_env):
    from ansible_collections.tokenops.rotation.plugins.module_utils.store_file import FileStore

    (tmp_path / "pv").mkdir()   # the persistent volume; a missing one is refused, never made
    env = awx.inject(TYPES["store_file"], {"vault_password": "pw-1", "store_file": str(tmp_path / "pv" / "store.vault")}, tmp_path).env
    assert env["TOKENOPS_STORE_FILE"] == str(tmp_path / "pv" / "store.vault")
    store = FileStore(env["TOKENOPS_STORE_FILE"], vault_password_file=env["TOKENOPS_VAULT_PASSWORD_FILE"])
    store.write("t/das/h/x", {"secret": "s"}, cas=0)
    assert store.read("t/das/h/x").data["secret"] == "s"
    assert (tmp_path / "pv" / "store.vault" / "t" / "das" / "h" / "x.vault").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")


def test_pushgateway_injection_reaches_the_reports_pushgateway_option(tmp_path, clean_env):
    """What the credential injects is what rotation_report's `pushgateway: {}` (rotate.yml's default) resolves to."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.tokenops.rotation.plugins.module_utils import pushgateway

    for name in list(os.environ):
        if name.startswith("TOKENOPS_PUSHGATEWAY_"):
            clean_env.delenv(name)
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    inputs = {"url": "https://pushgateway.example:9091", "username": "tokenops", "password": "pw-1", "ca_cert": pem}
    assert awx.input_problems(TYPES["pushgateway"], inputs) == []
    injected = awx.inject(TYPES["pushgateway"], inputs, tmp_path)
    assert injected.safe_env["TOKENOPS_PUSHGATEWAY_PASSWORD"] == "**********"
    for name, value in injected.env.items():
        clean_env.setenv(name, value)
    spec = {"pushgateway": {"type": "dict", "options": pushgateway.SPEC}}
    validated = ArgumentSpecValidator(spec).validate({"pushgateway": {}})
    assert validated.error_messages == []
    options = pushgateway.check(validated.validated_parameters["pushgateway"])
    assert (options["url"], options["username"], options["password"], options["token"]) == \
        ("https://pushgateway.example:9091", "tokenops", "pw-1", None)
    assert open(options["ca_path"]).read() == pem
    assert "pw-1" in validated._no_log_values     # masked in the module's output like any secret option

    # A bearer token instead, no CA: the empty fields count as not given.
    for name, value in awx.inject(TYPES["pushgateway"], {"url": "https://p.example", "bearer_token": "t0k"}, tmp_path).env.items():
        clean_env.setenv(name, value)
    options = pushgateway.check(ArgumentSpecValidator(spec).validate({"pushgateway": {}}).validated_parameters["pushgateway"])
    assert options["token"] == "t0k" and options["username"] is None and options["ca_path"] is None
