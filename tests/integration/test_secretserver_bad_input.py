"""Bad input gets one clear message before any request: the simulator and the store saw none.

One playbook holds every case (each task ignores its error), so the cases cost one ansible-playbook run.
"""

import pytest

import secretserver_fixtures
from secretserver_fixtures import USER

pytestmark = pytest.mark.integration
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory   # the simulator fixtures

CASES = [
    ("a url without a scheme", dict(url="pam.example.com/SecretServer"), "http or https URL"),
    ("a url with a query", dict(url="https://pam.example.com/SecretServer?x=1"), "query"),
    ("no password", dict(_no_password=True), "needs password (or the environment variable TSS_PASSWORD)"),
    ("no username", dict(username=None, id="x"), "needs username"),
    ("neither id nor username", dict(username=None), "needs an id or a username"),
    ("a negative cap", dict(max_refreshes=-1), "max_refreshes must be 0 or more"),
    ("wrong type: max_refreshes", dict(max_refreshes="three"), "max_refreshes"),
    ("wrong type: refresh", dict(refresh="sometimes"), "refresh"),
    ("a domain in the username", dict(username="CORP\\svc"), "give the domain in domain"),
    ("vault_name without platform", dict(vault_name="Secret Server"), "only applies with platform: true"),
    ("otp with platform", dict(platform=True, otp="123456"), "do not apply with platform: true"),
    ("one otp for several tokens", dict(username=None, tokens=[{"username": "a"}, {"username": "b"}], otp="123456"), "per item"),
    ("a token listed twice", dict(username=None, tokens=[{"username": "a"}, {"id": "a", "username": "b"}]), "listed twice"),
    ("an unknown item option", dict(username=None, tokens=[{"username": "a", "colour": "red"}]), "colour"),
    ("both id and tokens", dict(id="x", tokens=[{"username": "a"}]), "mutually exclusive"),
    ("a dot segment in the id", dict(id="a/../b"), "'..' segment"),
    ("a bad duration", dict(rotate_before="soon"), "rotate_before"),
    ("an unknown state", dict(state="sideways"), "state"),
    ("return_secret without no_log", dict(return_secret=True), "no_log"),
    ("vault store without an address", dict(store={"backend": "vault", "token": "t"}), "VAULT_ADDR"),
]


def test_bad_input_refused_before_any_request(runner, ss, file_store):
    tasks = []
    for name, options, _needle in CASES:
        options = dict(options)
        args = {"url": ss.url, "username": USER, "password": "never-sent-password", "store": dict(file_store.options)}
        if options.pop("_no_password", False):
            args.pop("password")
        args.update(options)
        args = {k: v for k, v in args.items() if v is not None}
        tasks.append({"name": name, "tokenops.rotation.secretserver_token": args, "ignore_errors": True})
    tasks.append({"name": "info with a bad url", "tokenops.rotation.secretserver_token_info": {"url": "nowhere", "store": file_store.options},
                  "ignore_errors": True})
    run = runner.run(tasks, env=dict(file_store.env))
    results = {r["_task"]: r for r in run.results}
    for name, _options, needle in CASES + [("info with a bad url", None, "http or https URL")]:
        result = results[name]
        assert result["failed"] and needle in result["msg"], (name, result.get("msg"))
        # ansible-core 2.19 marks every failure "(traceback unavailable)" at -vvv; a real one would be a Python traceback.
        assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", (name, result["exception"])
    assert "Traceback (most recent call last)" not in run.output
    assert ss.sim.count() == 0 and ss.sim.platform.count() == 0, [(r.method, r.path) for r in ss.sim.requests]
    assert not file_store.file_path.exists()
