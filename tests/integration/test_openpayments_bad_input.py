"""Bad input gets one clear message before any request: the simulator and the store saw none."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openpayments_fixtures import KEY_ID, op, op_env, op_factory  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration


def rsa_pem():
    key = rsa.generate_private_key(65537, 2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def cases(op):
    quote = {"type": "quote", "actions": ["create"]}
    incoming = {"type": "incoming-payment", "actions": ["read"]}
    debit = {"value": "500", "assetCode": "USD", "assetScale": 2}
    return [
        ("a key that is not Ed25519", dict(id="a", access=[quote], private_key=rsa_pem()), "is an RSA key; Open Payments signs requests with Ed25519"),
        ("more than three access items", dict(id="a", access=[quote, incoming, dict(quote, actions=["read"]), dict(incoming, actions=["list"])]),
         "lists 4 items; an Open Payments grant takes at most 3"),
        ("outgoing payment without identifier", dict(id="a", access=[{"type": "outgoing-payment", "actions": ["create"]}]),
         "an outgoing-payment grant needs identifier"),
        ("an action the type does not have", dict(id="a", access=[{"type": "quote", "actions": ["list"]}]), "list is not an action of quote"),
        ("limits on incoming payments", dict(id="a", access=[dict(incoming, limits={"debitAmount": debit})]), "limits apply to outgoing-payment"),
        ("debit and receive amounts", dict(id="a", access=[{"type": "outgoing-payment", "actions": ["create"], "identifier": op.alice,
                                                            "limits": {"debitAmount": debit, "receiveAmount": debit}}]), "not both"),
        ("an amount that is no uint64", dict(id="a", access=[{"type": "outgoing-payment", "actions": ["create"], "identifier": op.alice,
                                                              "limits": {"debitAmount": dict(debit, value="-5")}}]), "unsigned 64-bit"),
        ("outgoing payment without interaction", dict(id="a", interaction="none", access=op.outgoing), "always needs the resource owner's consent"),
        ("the same item twice", dict(id="a", access=[quote, quote]), "lists the same item twice"),
        ("no access", dict(id="a"), "access is required"),
        ("a key that is no key", dict(id="a", access=[quote], private_key="not a key at all!"), "neither a PEM key nor base64"),
        ("a key id with a quote", dict(id="a", access=[quote], key_id='bad"id'), "key_id"),
        ("a url that is no URL", dict(id="a", access=[quote], url="auth.example"), "url must be"),
        ("cancel scope with present", dict(id="a", access=[quote], scope="grant"), "scope grant is for state absent"),
        ("a hash without its ref", dict(id="a", access=[quote], interact_hash="abc"), "interact_hash comes with interact_ref"),
        ("a grant listed twice", dict(tokens=[{"id": "a"}, {"id": "a"}], access=[quote]), "listed twice"),
        ("a bad poll timeout", dict(id="a", access=[quote], poll_timeout="soon"), "poll_timeout"),
        ("an interact_ref that is no text", dict(tokens=[{"id": "a"}], access=[quote], interact_refs={"a": 42}),
         "interact_refs: a must be the interact_ref (a string) or a dictionary with interact_ref and hash, got"),
        ("an interact_ref with unknown keys", dict(tokens=[{"id": "a"}], access=[quote], interact_refs={"a": {"ref": "x"}}),
         "interact_refs: a has unknown key(s) ref; it takes interact_ref and hash"),
        ("a redirect's hash without its interact_ref", dict(tokens=[{"id": "a"}], access=[quote], interact_refs={"a": {"hash": "x"}}),
         "interact_hash comes with interact_ref"),
        ("a missing key file", dict(id="a", access=[quote], private_key_path="/nonexistent/key.pem", _no_env_key=True),
         "private_key_path '/nonexistent/key.pem' does not exist or is not a file"),
    ]


def test_bad_input_refused_before_any_request(runner, op, file_store):
    tasks, expected = [], []
    for name, options, needle in cases(op):
        options = dict(options)
        args = {"url": op.url, "client_wallet_address": op.client, "key_id": KEY_ID, "store": dict(file_store.options)}
        task = {"name": name, "tokenops.rotation.openpayments_token": args, "ignore_errors": True}
        if options.pop("_no_env_key", False):
            task["environment"] = {"OPEN_PAYMENTS_PRIVATE_KEY": ""}
        args.update(options)
        tasks.append(task)
        expected.append((name, needle))
    op.sim.reset_counts()
    run = runner.run(tasks, env=op_env(op, file_store))
    assert len(run.results) == len(expected), run
    for result, (name, needle) in zip(run.results, expected):
        assert result["failed"] and needle in result["msg"], (name, result.get("msg"))
        assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", (name, result["exception"])
    assert "Traceback (most recent call last)" not in run.output
    assert op.sim.count() == 0, [(r.method, r.path) for r in op.sim.requests]
    assert not file_store.file_path.exists()
