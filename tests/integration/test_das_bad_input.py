"""Bad input gets one clear message before any request: the simulator and the store saw none."""

import pytest

from conftest import das_env

pytestmark = pytest.mark.integration

GOOD = {"id": "app", "description": "app", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "24h"}

CASES = [
    ("wrong type: allow_all_paths", dict(GOOD, allow_all_paths="sometimes"), "allow_all_paths"),
    ("wrong type: concurrency", dict(GOOD, concurrency="many"), "concurrency"),
    ("wrong type: a token item", dict(tokens=[["app"]], allow_path_patterns=["^/x$"]), "tokens[0] must be a dictionary"),
    ("wrong type: a role binding without its resource", dict(GOOD, role_bindings=[{"role_id": "SystemOPA"}]), "resource_kind"),
    ("empty pattern list", dict(GOOD, allow_path_patterns=[]), "DAS then allows every path"),
    ("missing pattern list", {k: v for k, v in GOOD.items() if k != "allow_path_patterns"}, "allow_all_paths: true"),
    ("an empty pattern", dict(GOOD, allow_path_patterns=["^/v1/.*", ""]), "empty pattern"),
    ("a pattern that is no regular expression", dict(GOOD, allow_path_patterns=["^/v1/(unclosed"]), "not a regular expression"),
    ("malformed id: empty segment", dict(GOOD, id="systems//opa"), "is malformed"),
    ("malformed id: system without name", dict(GOOD, id="systems/abc"), "systems/<system id>/<name>"),
    ("malformed id: spaces", dict(GOOD, id="my token"), "is malformed"),
    ("malformed id: dot segment", dict(GOOD, id="a/./b"), "is malformed"),
    ("a ttl with days", dict(GOOD, ttl="30d"), "no 'd' unit"),
    ("a bad duration", dict(GOOD, rotate_before="soon"), "rotate_before"),
    ("both id and tokens", dict(GOOD, tokens=["b"]), "mutually exclusive"),
    ("no credential", dict(GOOD, _no_admin=True), "api_token, refresher"),
    ("overlap with a refresher only", dict(GOOD, strategy="overlap", refresher={"id": "r", "initial_secret": "x" * 30}, _no_admin=True),
     "strategy overlap creates a second token id and needs api_token"),
    ("self-rotating refresher without ttl", dict(GOOD, refresher={"id": "r", "self_rotate": True, "allow_all_paths": True}),
     "refresher.self_rotate needs refresher.ttl"),
    ("a token listed twice", dict(tokens=["a", {"id": "a"}], allow_path_patterns=["^/x$"]), "listed twice"),
    ("an unknown item option", dict(tokens=[{"id": "a", "colour": "red"}], allow_path_patterns=["^/x$"]), "unknown option(s) colour"),
]

STORE_CASES = [
    ("vault without an address", {"backend": "vault", "token": "t"}, "VAULT_ADDR"),
    ("vault without a token", {"backend": "vault", "url": "http://127.0.0.1:9"}, "VAULT_TOKEN"),
    ("approle without a role id", {"backend": "vault", "url": "http://127.0.0.1:9", "auth_method": "approle"}, "role_id"),
    ("file store without a password", {"backend": "file", "file_path": "/tmp/never/store.vault"}, "vault_password"),
    ("an unknown backend", {"backend": "consul"}, "backend"),
]


def _assert_refused(run, das, needle):
    result = run.result
    assert result["failed"], result
    assert needle in result["msg"], result["msg"]
    # ansible-core 2.19 marks every failure "(traceback unavailable)" at -vvv; a real one would be a Python traceback.
    assert "Traceback (most recent call last)" not in run.output
    assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", result["exception"]
    assert das.sim.count() == 0, [(r.method, r.path) for r in das.sim.requests]


@pytest.mark.parametrize("name, options, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_before_any_request(runner, das, file_store, name, options, needle):
    options = dict(options)
    admin = not options.pop("_no_admin", False)
    args = {"url": das.url, "store": dict(file_store.options)}
    args.update(options)
    das.sim.reset_counts()
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token": args, "ignore_errors": True}], env=das_env(das, file_store, admin))
    _assert_refused(run, das, needle)
    assert not file_store.file_path.exists()


@pytest.mark.parametrize("name, store_options, needle", STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_missing_store_setting_refused_before_any_request(runner, das, tmp_path, bao, name, store_options, needle):
    writes = bao.writes()
    requests_before = bao.requests()
    args = dict(GOOD, url=das.url, store=store_options)
    das.sim.reset_counts()
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token": args, "ignore_errors": True}], env={"STYRA_DAS_TOKEN": das.admin})
    _assert_refused(run, das, needle)
    assert bao.writes() == writes and bao.requests() == requests_before
    assert not (tmp_path / "never").exists()


def test_missing_store_folder_refused_and_nothing_created(runner, das, file_store, tmp_path):
    """A volume that failed to mount must not become a new, empty store: the task fails before any request."""
    missing = tmp_path / "not-mounted"
    store = dict(file_store.options, file_path=str(missing / "store.vault"))
    args = dict(GOOD, url=das.url, store=store)
    das.sim.reset_counts()
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token": args, "ignore_errors": True}], env=das_env(das, file_store))
    _assert_refused(run, das, "the folder %s does not exist" % missing)
    assert "store.create_folder: true" in run.result["msg"]
    assert not missing.exists()
    # asked for, the folder is made, and the token stored in it
    args["store"] = dict(store, create_folder=True)
    run = runner.run([{"name": "made", "tokenops.rotation.das_token": args, "register": "r"}], env=das_env(das, file_store))
    assert run.rc == 0 and run.result["action"] == "created", run
    assert (missing / "store.vault" / file_store.prefix / "das" / das.host / "app.vault").is_file()


def test_missing_url_refused(runner, das, file_store):
    args = dict(GOOD, store=file_store.options)
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token": args, "ignore_errors": True}], env=das_env(das, file_store))
    assert run.result["failed"] and "missing required arguments: url" in run.result["msg"], run.result
    assert das.sim.count() == 0


def test_info_bad_query_refused(runner, das, file_store):
    args = {"url": das.url, "store": file_store.options, "query": "[?due"}
    das.sim.reset_counts()
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token_info": args, "ignore_errors": True}], env=das_env(das, file_store))
    _assert_refused(run, das, "not a JMESPath expression")


def test_info_audit_refused_without_a_token_that_can_list(runner, das, file_store):
    args = {"url": das.url, "store": file_store.options, "ids": ["app"], "audit": True}
    das.sim.reset_counts()
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token_info": args, "ignore_errors": True}],
                     env=das_env(das, file_store, admin=False))
    _assert_refused(run, das, "audit lists every token of the tenant (GET /v1/tokens) and needs api_token")
    args = {"url": das.url, "store": file_store.options, "audit": True, "audit_max_lifetime": "a year"}
    run = runner.run([{"name": "bad", "tokenops.rotation.das_token_info": args, "ignore_errors": True}], env=das_env(das, file_store))
    _assert_refused(run, das, "audit_max_lifetime")
