"""The Open Payments simulator against ../shared/api/openpayments.md and the vendor OpenAPI files.

Requests are signed with the collection's signer (its agreement with Interledger's own library is
shown in tests/unit/plugins/module_utils/test_http_signatures.py); responses are validated against
openpayments-auth-server.yaml and openpayments-wallet-address-server.yaml where shared/ sits beside the clone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519

from ansible_collections.tokenops.rotation.plugins.module_utils.http_signatures import Signer, public_jwk
from tests.fixtures.simulators import start_simulator  # noqa: F401  # pylint: disable=unused-import
from tests.simulators.base import Clock
from tests.simulators.openpayments import OpenPaymentsSimulator

SPECS = Path(__file__).resolve().parents[3].parent / "shared" / "api" / "specs"
KEY_ID = "sim-key"


class Client:
    """Signed requests, as an Open Payments client sends them (compact JSON, GNAP authorization)."""

    def __init__(self, sim, key, key_id=KEY_ID):
        self.sim = sim
        self.signer = Signer(key, key_id, now=sim.clock.now)

    def call(self, method, url, body=None, token=None, sign=True, extra=None):
        headers = {}
        data = None
        if token:
            headers["Authorization"] = "GNAP " + token
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if sign:
            headers.update(self.signer(method, url, headers, data))
        headers.update(extra or {})
        return requests.request(method, url, data=data, headers=headers, timeout=10)


@pytest.fixture
def clock():
    return Clock(frozen=True)


@pytest.fixture
def key():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def make_sim(start_simulator, key):
    def make(**switches):
        switches.setdefault("wait", 0)
        sim = start_simulator(OpenPaymentsSimulator, **switches)
        sim.add_wallet("client", public_name="Client", keys=[public_jwk(key, KEY_ID)])
        sim.add_wallet("alice", public_name="Alice")
        sim.add_wallet("anon", keys=[public_jwk(key, KEY_ID)])      # no publicName
        return sim

    return make


@pytest.fixture
def sim(make_sim):
    return make_sim()


@pytest.fixture
def op(sim, key):
    return Client(sim, key)


def incoming(sim):
    return {"access_token": {"access": [{"type": "incoming-payment", "actions": ["create", "read"], "identifier": sim.wallet_url("alice")}]},
            "client": sim.wallet_url("client")}


def outgoing(sim, finish=None, client=None):
    body = {"access_token": {"access": [{"type": "outgoing-payment", "actions": ["create", "read"], "identifier": sim.wallet_url("alice"),
                                         "limits": {"debitAmount": {"value": "500", "assetCode": "USD", "assetScale": 2}}}]},
            "client": client or sim.wallet_url("client"), "interact": {"start": ["redirect"]}}
    if finish:
        body["interact"]["finish"] = {"method": "redirect", "uri": "https://client.example/return", "nonce": "client-nonce-1"}
    return body


def error_of(response):
    return response.status_code, response.json()["error"].get("code"), response.json()["error"]["description"]


# ---- the OpenAPI files ------------------------------------------------------------------------

class Spec:
    def __init__(self, path):
        import yaml
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
        self.document = _drop_ref_siblings(yaml.safe_load(path.read_text()))
        self.uri = "urn:" + path.name
        self.registry = Registry().with_resource(self.uri, Resource.from_contents(self.document, default_specification=DRAFT202012))

    def check(self, response, template, method):
        from jsonschema import Draft202012Validator
        declared = self.document["paths"][template][method.lower()]["responses"]
        assert str(response.status_code) in declared, f"{method} {template} answered {response.status_code}, not declared"
        pointer = "#/paths/" + _pointer(template) + "/" + method.lower() + "/responses/" + str(response.status_code)
        answer = declared[str(response.status_code)]
        if "$ref" in answer:      # a shared answer: components/responses/401 ...
            pointer = answer["$ref"]
            answer = self.document
            for part in pointer.lstrip("#/").split("/"):
                answer = answer[part]
        content = answer.get("content")
        if content is None:
            assert not response.content
            return None
        schema = dict(content["application/json"]["schema"])
        body = response.json()
        validator = Draft202012Validator({"$ref": self.uri + pointer + "/content/application~1json/schema"}, registry=self.registry)
        problems = [e.message for e in validator.iter_errors(body)]
        assert schema and not problems, (template, method, response.status_code, problems)
        return body


def _drop_ref_siblings(node):
    """`{$ref: X, additionalProperties: false}` (the resource server's list items and complete response) means "X,
    closed" to its authors, but read as JSON Schema 2020-12 it forbids every property, since the sibling has no
    `properties` of its own. X's own schema decides, as in the SDK's validation."""
    if isinstance(node, dict):
        if "$ref" in node:
            node.pop("additionalProperties", None)
        for value in node.values():
            _drop_ref_siblings(value)
    elif isinstance(node, list):
        for value in node:
            _drop_ref_siblings(value)
    return node


def _pointer(template):
    return template.replace("~", "~0").replace("/", "~1")


@pytest.fixture(scope="module")
def auth_spec():
    path = SPECS / "openpayments-auth-server.yaml"
    if not path.is_file():
        pytest.skip("../shared/api/specs not found: simulator fidelity is checked only where shared/ sits beside the clone")
    return Spec(path)


@pytest.fixture(scope="module")
def wallet_spec():
    path = SPECS / "openpayments-wallet-address-server.yaml"
    if not path.is_file():
        pytest.skip("../shared/api/specs not found")
    return Spec(path)


def test_wallet_address_and_jwks_match_the_spec(sim, wallet_spec, key):
    address = wallet_spec.check(requests.get(sim.wallet_url("client"), timeout=10), "/", "GET")
    assert address["authServer"] == sim.grant_url and address["publicName"] == "Client"
    keys = wallet_spec.check(requests.get(sim.wallet_url("client") + "/jwks.json", timeout=10), "/jwks.json", "GET")
    assert keys == {"keys": [public_jwk(key, KEY_ID)]}
    assert requests.get(sim.wallet_url("nobody"), timeout=10).status_code == 404


def test_every_grant_flow_answer_matches_the_spec(sim, op, auth_spec):
    grant = auth_spec.check(op.call("POST", sim.grant_url, incoming(sim)), "/", "POST")
    assert "wait" not in grant["continue"] and re.fullmatch(r"[0-9A-F]{20}", grant["access_token"]["value"])
    assert re.fullmatch(re.escape(sim.auth_server) + r"/token/[0-9a-f-]{36}", grant["access_token"]["manage"])
    assert grant["access_token"]["expires_in"] == 600
    rotated = auth_spec.check(op.call("POST", grant["access_token"]["manage"], token=grant["access_token"]["value"]), "/token/{id}", "POST")
    auth_spec.check(op.call("DELETE", rotated["access_token"]["manage"], token=rotated["access_token"]["value"]), "/token/{id}", "DELETE")
    pending = auth_spec.check(op.call("POST", sim.grant_url, outgoing(sim, finish=True)), "/", "POST")
    cont = pending["continue"]
    auth_spec.check(op.call("POST", cont["uri"], {"interact_ref": "nope"}, token=cont["access_token"]["value"]), "/continue/{id}", "POST")
    interaction = pending["interact"]["redirect"].split("/interact/")[1].split("/")[0]
    ref = sim.approve(interaction)["interact_ref"]
    issued = auth_spec.check(op.call("POST", cont["uri"], {"interact_ref": ref}, token=cont["access_token"]["value"]), "/continue/{id}", "POST")
    assert sim.token_works(issued["access_token"]["value"])
    auth_spec.check(op.call("DELETE", cont["uri"], token=cont["access_token"]["value"]), "/continue/{id}", "DELETE")
    auth_spec.check(op.call("DELETE", cont["uri"], token=cont["access_token"]["value"]), "/continue/{id}", "DELETE")
    auth_spec.check(op.call("POST", rotated["access_token"]["manage"], token=rotated["access_token"]["value"]), "/token/{id}", "POST")


# ---- grants ----------------------------------------------------------------------------------

def test_non_interactive_grant_token_works_at_the_resource_server(sim, op):
    grant = op.call("POST", sim.grant_url, incoming(sim)).json()
    token = grant["access_token"]["value"]
    create = {"walletAddress": sim.wallet_url("alice")}
    assert op.call("POST", sim.base_url + "/rs/incoming-payments", create, token=token).status_code == 201
    assert op.call("POST", sim.base_url + "/rs/incoming-payments", create, token="0" * 20).status_code == 401
    assert op.call("POST", sim.base_url + "/rs/incoming-payments", create, token=token, sign=False).status_code == 401


@pytest.mark.parametrize("body, status, code, needle", [
    (lambda s: dict(incoming(s), access_token={"access": incoming(s)["access_token"]["access"] * 2}), 400, None, "duplicate"),
    (lambda s: dict(incoming(s), access_token={"access": [{"type": "quote", "actions": [a]} for a in ("create", "read", "read-all")]
                                               + [{"type": "incoming-payment", "actions": ["read"]}]}), 400, None, "more than 3"),
    (lambda s: {**outgoing(s), "access_token": {"access": [{"type": "outgoing-payment", "actions": ["create"]}]}}, 400, None, "identifier"),
    (lambda s: {k: v for k, v in outgoing(s).items() if k != "interact"}, 400, "invalid_request", "interact"),
    (lambda s: outgoing(s, client=s.wallet_url("anon")), 400, "invalid_client", "client"),
    (lambda s: dict(incoming(s), client=42), 400, "invalid_request", "client"),
], ids=["duplicates", "four-items", "outgoing-without-identifier", "no-interact", "no-public-name", "bad-client"])
def test_grant_request_errors(sim, op, body, status, code, needle):
    response = op.call("POST", sim.grant_url, body(sim))
    got = error_of(response)
    assert got[:2] == (status, code) and needle in got[2], got
    assert not sim.tokens


def test_unknown_tenant_is_not_found(sim, op):
    assert error_of(op.call("POST", sim.auth_server + "/other", incoming(sim)))[:3] == (404, "invalid_request", "Not Found")


def test_directed_identity_only_without_interaction(sim, op, key):
    jwk_client = {"jwk": public_jwk(key, KEY_ID)}
    assert op.call("POST", sim.grant_url, dict(incoming(sim), client=jwk_client)).status_code == 200
    assert error_of(op.call("POST", sim.grant_url, outgoing(sim, client=jwk_client)))[:2] == (400, "invalid_client")


@pytest.mark.parametrize("padding", [True, False])
def test_interactive_grant_approve_and_continue(make_sim, key, padding):
    sim = make_sim(finish_hash_padding=padding)
    op = Client(sim, key)
    pending = op.call("POST", sim.grant_url, outgoing(sim, finish=True)).json()
    cont, interact = pending["continue"], pending["interact"]
    assert cont["wait"] == 0 and interact["redirect"].startswith(sim.auth_server + "/interact/")
    assert "clientName=Client" in interact["redirect"]
    assert requests.get(interact["redirect"], timeout=10).status_code == 200
    token = cont["access_token"]["value"]
    assert error_of(op.call("POST", cont["uri"], {"interact_ref": "x"}, token=token))[:2] == (404, "invalid_continuation")
    interaction = interact["redirect"].split("/interact/")[1].split("/")[0]
    approval = requests.post(sim.base_url + "/_sim/approve/" + interaction, timeout=10).json()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(approval["redirect"]).query)
    assert query["interact_ref"] == [approval["interact_ref"]]
    digest = base64.b64encode(hashlib.sha256(f"client-nonce-1\n{interact['finish']}\n{approval['interact_ref']}\n{sim.grant_url}"
                                             .encode()).digest()).decode()
    assert query["hash"] == [digest if padding else digest.rstrip("=")]
    assert error_of(op.call("POST", cont["uri"], token=token))[:3] == (401, "request_denied", "grant cannot be polled")
    issued = op.call("POST", cont["uri"], {"interact_ref": approval["interact_ref"]}, token=token).json()
    assert sim.token_works(issued["access_token"]["value"])
    # A second continuation is refused: a lost answer cannot be fetched again.
    assert error_of(op.call("POST", cont["uri"], {"interact_ref": approval["interact_ref"]}, token=token))[:2] == (401, "request_denied")
    assert error_of(op.call("POST", cont["uri"], {"other": 1}, token=token))[:2] == (401, "invalid_request")
    assert error_of(op.call("POST", cont["uri"], token="WRONG"))[:2] == (401, "invalid_continuation")


def test_polling_honours_wait(make_sim, key, clock):
    sim = make_sim(wait=5)
    op = Client(sim, key)
    pending = op.call("POST", sim.grant_url, outgoing(sim)).json()
    uri, token = pending["continue"]["uri"], pending["continue"]["access_token"]["value"]
    assert error_of(op.call("POST", uri, token=token))[:2] == (400, "too_fast")
    clock.advance(5)
    still = op.call("POST", uri, token=token).json()
    assert set(still) == {"continue"} and still["continue"]["wait"] == 5
    sim.approve(pending["interact"]["redirect"].split("/interact/")[1].split("/")[0])
    assert error_of(op.call("POST", uri, token=token))[:2] == (400, "too_fast")   # the last attempt restarted the wait
    clock.advance(5)
    assert sim.token_works(op.call("POST", uri, token=token).json()["access_token"]["value"])
    clock.advance(5)
    assert error_of(op.call("POST", uri, token=token))[:2] == (401, "request_denied")


def test_denied_interaction_cannot_be_continued(sim, op):
    pending = op.call("POST", sim.grant_url, outgoing(sim, finish=True)).json()
    approval = sim.approve(pending["interact"]["redirect"].split("/interact/")[1].split("/")[0], deny=True)
    cont = pending["continue"]
    assert error_of(op.call("POST", cont["uri"], {"interact_ref": approval["interact_ref"]}, token=cont["access_token"]["value"]))[:2] \
        == (404, "invalid_continuation")


# ---- rotation, revocation, cancel --------------------------------------------------------------

def test_rotation_kills_the_old_token_and_manage_url_at_once(sim, op, clock):
    token = op.call("POST", sim.grant_url, incoming(sim)).json()["access_token"]
    new = op.call("POST", token["manage"], token=token["value"]).json()["access_token"]
    assert new["manage"] != token["manage"] and new["value"] != token["value"] and new["access"] == token["access"]
    assert not sim.token_works(token["value"]) and sim.token_works(new["value"])
    assert error_of(op.call("POST", token["manage"], token=token["value"])) == (401, "invalid_client", "invalid access token")
    clock.advance(601)                                   # expired tokens can be rotated (Rafiki)
    assert not sim.token_works(new["value"])
    again = op.call("POST", new["manage"], token=new["value"]).json()["access_token"]
    assert sim.token_works(again["value"])


def test_switch_rotate_expired(make_sim, key, clock):
    sim = make_sim(rotate_expired=False)
    op = Client(sim, key)
    token = op.call("POST", sim.grant_url, incoming(sim)).json()["access_token"]
    clock.advance(600)
    assert error_of(op.call("POST", token["manage"], token=token["value"]))[:2] == (401, "invalid_client")


def test_revoke_then_401(sim, op):
    token = op.call("POST", sim.grant_url, incoming(sim)).json()["access_token"]
    assert op.call("DELETE", token["manage"], token=token["value"]).status_code == 204
    assert not sim.token_works(token["value"])
    assert error_of(op.call("DELETE", token["manage"], token=token["value"])) == (401, "invalid_client", "invalid access token")


def test_cancel_revokes_the_grant_and_its_tokens(sim, op):
    grant = op.call("POST", sim.grant_url, incoming(sim)).json()
    cont, token = grant["continue"], grant["access_token"]
    assert op.call("DELETE", cont["uri"], token=cont["access_token"]["value"]).status_code == 204
    assert not sim.token_works(token["value"])
    assert error_of(op.call("POST", token["manage"], token=token["value"]))[:2] == (401, "invalid_client")
    assert error_of(op.call("DELETE", cont["uri"], token=cont["access_token"]["value"]))[:2] == (401, "invalid_continuation")


def test_tokens_of_a_revoked_grant_cannot_be_managed(sim, op):
    token = op.call("POST", sim.grant_url, incoming(sim)).json()["access_token"]
    with sim.lock:
        grant = next(iter(sim.grants.values()))
        grant["finalization"] = "revoked"            # revoked by the AS's administrator, not through cancel
    assert error_of(op.call("POST", token["manage"], token=token["value"])) == (401, "invalid_client", "invalid access token")
    assert error_of(op.call("DELETE", token["manage"], token=token["value"]))[:2] == (401, "invalid_client")


# ---- signatures and the strict switch -----------------------------------------------------------

def test_signature_errors_follow_rafikis_order(sim, op, key):
    body = incoming(sim)
    assert error_of(op.call("POST", sim.grant_url, body, sign=False)) == (401, "invalid_client", "invalid signature headers")
    other = Client(sim, ed25519.Ed25519PrivateKey.generate())
    assert error_of(other.call("POST", sim.grant_url, body)) == (401, "invalid_client", "invalid signature")
    unknown = Client(sim, key, key_id="nobody")
    assert error_of(unknown.call("POST", sim.grant_url, body)) == (400, "invalid_client", "could not determine client")
    upper = op.call("POST", sim.grant_url, body, extra={"Signature-Input": 'sig1=("@Method" "@target-uri");keyid="sim-key";created=1'})
    assert error_of(upper)[2] == "invalid signature headers"
    assert sim.rejections[-1] == "signature headers" and not sim.tokens


def test_strict_switch(make_sim, key, clock):
    lenient, strict = make_sim(), make_sim(strict=True)
    for sim in (lenient, strict):
        op = Client(sim, key)
        token = op.call("POST", sim.grant_url, incoming(sim)).json()["access_token"]
        # The managed token's manage URL with another token in Authorization: Rafiki does not compare them.
        other = op.call("POST", sim.grant_url, incoming(sim)).json()["access_token"]
        answer = op.call("POST", token["manage"], token=other["value"])
        assert answer.status_code == (401 if sim.strict else 200), answer.text
        # A signature made long ago: Rafiki has no replay window.
        old = Client(sim, key)
        old.signer.now = lambda: clock.now() - 3600
        assert old.call("POST", sim.grant_url, incoming(sim)).status_code == (401 if sim.strict else 200)
        # A body outside the signature.
        unsigned_body = op.call("POST", sim.grant_url, extra={"Content-Type": "application/json"})
        assert unsigned_body.status_code == 400       # no body: Rafiki's request validation refuses it
        signed = op.signer("POST", sim.grant_url, {}, None)
        sent = requests.post(sim.grant_url, data=json.dumps(incoming(sim)), timeout=10,
                             headers=dict(signed, **{"Content-Type": "application/json"}))
        assert sent.status_code == (401 if sim.strict else 200), sent.text


def test_state_survives_a_restart(tmp_path, key):
    state = tmp_path / "op.json"
    first = OpenPaymentsSimulator(state_file=str(state), wait=0)
    first.start()
    first.add_wallet("client", public_name="Client", keys=[public_jwk(key, KEY_ID)])
    first.add_wallet("alice", public_name="Alice")
    token = Client(first, key).call("POST", first.grant_url, incoming(first)).json()["access_token"]
    first.stop()
    second = OpenPaymentsSimulator(state_file=str(state))
    second.start()
    try:
        assert second.token_works(token["value"]) and token["value"] in second.issued
    finally:
        second.stop()


def test_request_log_holds_no_token(sim, op, caplog):
    caplog.set_level("DEBUG", logger="simulator")
    grant = op.call("POST", sim.grant_url, incoming(sim)).json()
    op.call("POST", grant["access_token"]["manage"], token=grant["access_token"]["value"])
    text = caplog.text + repr([r.headers for r in sim.requests])
    assert sim.issued and not [s for s in sim.issued if s in text]


# ---- the resource server (openpayments-resource-server.yaml) -----------------------------------

@pytest.fixture(scope="module")
def rs_spec():
    path = SPECS / "openpayments-resource-server.yaml"
    if not path.is_file():
        pytest.skip("../shared/api/specs not found")
    return Spec(path)


def grant_token(sim, op, *access):
    response = op.call("POST", sim.grant_url, {"access_token": {"access": list(access)}, "client": sim.wallet_url("client")})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]["value"]


def rs(sim, path=""):
    return sim.base_url + "/rs" + path


def test_wallet_address_advertises_the_resource_server(sim):
    assert requests.get(sim.wallet_url("alice"), timeout=5).json()["resourceServer"] == sim.base_url + "/rs"


def test_incoming_payments_follow_the_spec(sim, op, rs_spec):
    alice = sim.wallet_url("alice")
    token = grant_token(sim, op, {"type": "incoming-payment", "actions": ["create", "read", "list", "complete"], "identifier": alice})
    body = {"walletAddress": alice, "incomingAmount": {"value": "2500", "assetCode": "USD", "assetScale": 2},
            "metadata": {"externalRef": "INV-1"}, "expiresAt": "2030-01-01T00:00:00Z"}
    created = rs_spec.check(op.call("POST", rs(sim, "/incoming-payments"), body, token=token), "/incoming-payments", "POST")
    assert created["id"].startswith(rs(sim, "/incoming-payments/")) and created["receivedAmount"]["value"] == "0"
    assert created["methods"][0]["sharedSecret"] in sim.issued
    second = op.call("POST", rs(sim, "/incoming-payments"), {"walletAddress": alice}, token=token).json()
    listed = rs_spec.check(op.call("GET", rs(sim, "/incoming-payments?" + urllib.parse.urlencode({"wallet-address": alice, "first": 1})),
                                   token=token), "/incoming-payments", "GET")
    assert [p["id"] for p in listed["result"]] == [created["id"]] and "methods" not in listed["result"][0]
    assert listed["pagination"] == {"hasPreviousPage": False, "hasNextPage": True, "startCursor": created["id"].rsplit("/", 1)[1],
                                    "endCursor": created["id"].rsplit("/", 1)[1]}
    after = op.call("GET", rs(sim, "/incoming-payments?" + urllib.parse.urlencode(
        {"wallet-address": alice, "first": 5, "cursor": listed["pagination"]["endCursor"]})), token=token).json()
    assert [p["id"] for p in after["result"]] == [second["id"]] and after["pagination"]["hasNextPage"] is False
    before = op.call("GET", rs(sim, "/incoming-payments?" + urllib.parse.urlencode(
        {"wallet-address": alice, "last": 5, "cursor": after["pagination"]["startCursor"]})), token=token).json()
    assert [p["id"] for p in before["result"]] == [created["id"]]
    one = rs_spec.check(op.call("GET", created["id"], token=token), "/incoming-payments/{id}", "GET")
    assert one["incomingAmount"]["value"] == "2500" and one["metadata"] == {"externalRef": "INV-1"}
    public = rs_spec.check(requests.get(created["id"], timeout=5), "/incoming-payments/{id}", "GET")
    assert public == {"receivedAmount": created["receivedAmount"], "authServer": sim.grant_url}
    done = rs_spec.check(op.call("POST", created["id"] + "/complete", token=token), "/incoming-payments/{id}/complete", "POST")
    assert done["completed"] is True
    rs_spec.check(op.call("GET", rs(sim, "/incoming-payments/00000000-0000-4000-8000-000000000000"), token=token),
                  "/incoming-payments/{id}", "GET")


def test_quotes_and_outgoing_payments_follow_the_spec(sim, op, rs_spec):
    alice, shop = sim.wallet_url("alice"), sim.wallet_url("anon")
    receiving = grant_token(sim, op, {"type": "incoming-payment", "actions": ["create", "read"], "identifier": shop})
    invoice = op.call("POST", rs(sim, "/incoming-payments"), {"walletAddress": shop, "incomingAmount":
                                                              {"value": "700", "assetCode": "USD", "assetScale": 2}}, token=receiving).json()
    quoting = grant_token(sim, op, {"type": "quote", "actions": ["create", "read"]})
    quote = rs_spec.check(op.call("POST", rs(sim, "/quotes"), {"walletAddress": alice, "receiver": invoice["id"], "method": "ilp"},
                                  token=quoting), "/quotes", "POST")
    assert quote["receiveAmount"]["value"] == "700" and quote["debitAmount"]["value"] == "700"
    rs_spec.check(op.call("GET", quote["id"], token=quoting), "/quotes/{id}", "GET")
    fixed = op.call("POST", rs(sim, "/quotes"),
                    {"walletAddress": alice, "receiver": invoice["id"], "method": "ilp",
                     "debitAmount": {"value": "100", "assetCode": "USD", "assetScale": 2}}, token=quoting)
    assert fixed.status_code == 201 and fixed.json()["receiveAmount"]["value"] == "100"
    paying = _outgoing_token(sim, op, limit="800")
    paid = rs_spec.check(op.call("POST", rs(sim, "/outgoing-payments"), {"walletAddress": alice, "quoteId": quote["id"]}, token=paying),
                         "/outgoing-payments", "POST")
    assert paid["grantSpentDebitAmount"]["value"] == "700" and paid["sentAmount"] == paid["debitAmount"]
    assert op.call("GET", invoice["id"], token=receiving).json()["completed"] is True     # paid in full
    listed = rs_spec.check(op.call("GET", rs(sim, "/outgoing-payments?wallet-address=" + urllib.parse.quote(alice, safe="")), token=paying),
                           "/outgoing-payments", "GET")
    assert [p["id"] for p in listed["result"]] == [paid["id"]]
    rs_spec.check(op.call("GET", paid["id"], token=paying), "/outgoing-payments/{id}", "GET")
    # The grant's debitAmount limit (800) holds across its payments: 700 spent, 200 more is refused.
    second = op.call("POST", rs(sim, "/incoming-payments"), {"walletAddress": shop}, token=receiving).json()
    over = op.call("POST", rs(sim, "/outgoing-payments"),
                   {"walletAddress": alice, "incomingPayment": second["id"],
                    "debitAmount": {"value": "200", "assetCode": "USD", "assetScale": 2}}, token=paying)
    assert over.status_code == 403 and over.json()["error"]["code"]


def _outgoing_token(sim, op, limit):
    access = {"type": "outgoing-payment", "actions": ["create", "read", "list"], "identifier": sim.wallet_url("alice"),
              "limits": {"debitAmount": {"value": limit, "assetCode": "USD", "assetScale": 2}}}
    body = {"access_token": {"access": [access]}, "client": sim.wallet_url("client"), "interact": {"start": ["redirect"]}}
    pending = op.call("POST", sim.grant_url, body).json()
    interaction = pending["interact"]["redirect"].split("/interact/", 1)[1].split("/", 1)[0]
    ref = sim.approve(interaction)["interact_ref"]
    done = op.call("POST", pending["continue"]["uri"], {"interact_ref": ref}, token=pending["continue"]["access_token"]["value"])
    return done.json()["access_token"]["value"]


def test_the_resource_server_enforces_each_tokens_access(sim, op, rs_spec):
    """A quote grant's token can neither create incoming payments nor pay; identifier and actions are checked."""
    alice, shop = sim.wallet_url("alice"), sim.wallet_url("anon")
    quote_only = grant_token(sim, op, {"type": "quote", "actions": ["create", "read"]})
    refused = op.call("POST", rs(sim, "/incoming-payments"), {"walletAddress": alice}, token=quote_only)
    rs_spec.check(refused, "/incoming-payments", "POST")
    assert refused.status_code == 403
    assert op.call("POST", rs(sim, "/outgoing-payments"), {"walletAddress": alice, "quoteId": rs(sim, "/quotes/x")},
                   token=quote_only).status_code == 403
    only_alice = grant_token(sim, op, {"type": "incoming-payment", "actions": ["create", "read"], "identifier": alice})
    assert op.call("POST", rs(sim, "/incoming-payments"), {"walletAddress": shop}, token=only_alice).status_code == 403
    created = op.call("POST", rs(sim, "/incoming-payments"), {"walletAddress": alice}, token=only_alice).json()
    no_list = op.call("GET", rs(sim, "/incoming-payments?wallet-address=" + urllib.parse.quote(alice, safe="")), token=only_alice)
    assert no_list.status_code == 403
    rs_spec.check(no_list, "/incoming-payments", "GET")
    assert op.call("POST", created["id"] + "/complete", token=only_alice).status_code == 403     # no "complete"
    # read sees only what the grant's client created; read-all sees every payment of the wallet.
    sim.add_wallet("other", public_name="Other", keys=[sim.wallets["client"]["keys"][0]])
    other = op.call("POST", sim.grant_url,
                    {"access_token": {"access": [{"type": "incoming-payment", "actions": ["read"], "identifier": alice}]},
                     "client": sim.wallet_url("other")}).json()["access_token"]["value"]
    assert op.call("GET", created["id"], token=other).status_code == 404
    reader = op.call("POST", sim.grant_url,
                     {"access_token": {"access": [{"type": "incoming-payment", "actions": ["read-all"], "identifier": alice}]},
                      "client": sim.wallet_url("other")}).json()["access_token"]["value"]
    assert op.call("GET", created["id"], token=reader).status_code == 200


def test_resource_server_401s_carry_the_authorization_server(sim, op, rs_spec):
    response = op.call("GET", rs(sim, "/incoming-payments?wallet-address=" + urllib.parse.quote(sim.wallet_url("alice"), safe="")), token="F" * 20)
    rs_spec.check(response, "/incoming-payments", "GET")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == f"GNAP as_uri={sim.grant_url}"
    missing = op.call("GET", rs(sim, "/incoming-payments"), token=grant_token(sim, op, {"type": "incoming-payment", "actions": ["list"]}))
    assert missing.status_code == 400                     # wallet-address is required
    assert requests.get(rs(sim, "/anything"), timeout=5).status_code == 404


@pytest.mark.parametrize("mode, status", [("unimplemented", 500), ("document", 200)])
def test_did_document(make_sim, wallet_spec, mode, status):
    sim = make_sim(**({} if mode == "unimplemented" else {"did_document": mode}))
    response = requests.get(sim.wallet_url("client") + "/did.json", timeout=5)
    assert response.status_code == status
    if status == 200:
        wallet_spec.check(response, "/did.json", "GET")
        assert response.json()["verificationMethod"][0]["publicKeyJwk"]["kid"] == KEY_ID
    assert requests.get(sim.wallet_url("nobody") + "/did.json", timeout=5).status_code == 404


def test_resources_survive_a_restart(tmp_path, key):
    clock = Clock(frozen=True)
    state = str(tmp_path / "op.json")
    first = OpenPaymentsSimulator(clock=clock, state_file=state, wait=0)
    with first:
        first.add_wallet("client", public_name="Client", keys=[public_jwk(key, KEY_ID)])
        first.add_wallet("alice", public_name="Alice")
        op = Client(first, key)
        token = grant_token(first, op, {"type": "incoming-payment", "actions": ["create", "read"]})
        created = op.call("POST", rs(first, "/incoming-payments"), {"walletAddress": first.wallet_url("alice")}, token=token).json()
    second = OpenPaymentsSimulator(clock=clock, state_file=state, wait=0)
    second.start(port=first.port)
    try:
        assert Client(second, key).call("GET", created["id"], token=token).json()["id"] == created["id"]
    finally:
        second.stop()
