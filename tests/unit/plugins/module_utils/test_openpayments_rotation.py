# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpayments_token's steps (plugins/module_utils/openpayments_rotation.py) run in-process by the driver against the
Open Payments simulator: each test is a real module run (argument parsing, the file store, the HTTP layer with its
change guard), quick enough to walk every step and every way a token dies.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ansible.module_utils.testing import patch_module_args

from ansible_collections.tokenops.rotation.plugins.module_utils.driver import Plan
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments_rotation import OpenPaymentsSteps
from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host, store_from_params
from ansible_collections.tokenops.rotation.plugins.modules.openpayments_token import OpenPaymentsTokenModule
from tests.simulators.openpayments import OpenPaymentsSimulator

KEY_ID = "unit-key"


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "OPEN_PAYMENTS_WALLET_ADDRESS", "OPEN_PAYMENTS_KEY_ID", "OPEN_PAYMENTS_PRIVATE_KEY",
                 "OPEN_PAYMENTS_PRIVATE_KEY_PATH", "OPEN_PAYMENTS_AUTH_SERVER"):
        monkeypatch.delenv(name, raising=False)


class Harness:
    def __init__(self, sim, tmp_path):
        self.sim = sim
        key = ed25519.Ed25519PrivateKey.generate()
        self.pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kid": KEY_ID, "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
        self.client = sim.add_wallet("client", public_name="unit tests", keys=[jwk])
        self.alice = sim.add_wallet("alice", public_name="Alice")
        self.shop = sim.add_wallet("shop", public_name="Shop")
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.store_options = {"backend": "file", "file_path": str(tmp_path / "store.vault"), "vault_password": "unit-test-pw"}
        self.store = store_from_params(self.store_options)

    @property
    def incoming(self):
        return [{"type": "incoming-payment", "actions": ["create", "read", "list"], "identifier": self.shop},
                {"type": "quote", "actions": ["create", "read"]}]

    @property
    def outgoing(self):
        return [{"type": "outgoing-payment", "actions": ["create", "read"], "identifier": self.alice,
                 "limits": {"debitAmount": {"value": "500", "assetCode": "USD", "assetScale": 2}}}]

    def run(self, check=False, bug_expected=False, **args):
        full = {"url": self.sim.grant_url, "store": self.store_options, "client_wallet_address": self.client, "key_id": KEY_ID,
                "private_key": self.pem, "retries": 0, "_ansible_check_mode": check}
        if args.get("state") != "absent":
            full["access"] = self.incoming
        full.update(args)
        out = io.StringIO()
        with patch_module_args(full), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            OpenPaymentsTokenModule().run()
        result = json.loads(out.getvalue())
        assert bug_expected or "unexpected error" not in result.get("msg", ""), result
        return result

    def path(self, grant="app"):
        return "tokenops/openpayments/%s/%s" % (normalize_host(self.sim.grant_url), grant)

    def record(self, grant="app"):
        return self.store.read(self.path(grant)).data or {}

    def write(self, record, grant="app"):
        entry = self.store.read(self.path(grant))
        self.store.write(self.path(grant), record, entry.version)

    def as_requests(self):
        """The requests to the authorization server (not the wallet addresses nor the resource server)."""
        return [(r.method, r.path.split("/")[2], r.status) for r in self.sim.requests if r.path.startswith("/auth/")]

    def rotate_elsewhere(self, grant="app"):
        """Another tool rotates the stored token with the stored manage URL (as the SDK's client.token.rotate does)."""
        record = self.record(grant)
        with self.sim.lock:
            old = self.sim.tokens[record["token_id"]]
            old["revoked_at"] = self.sim.clock.now()
            return self.sim._new_token(self.sim.grants[old["grant_id"]])["value"]


@pytest.fixture
def make(tmp_path):
    started = []

    def start(**switches):
        switches.setdefault("wait", 0)
        sim = OpenPaymentsSimulator(**switches)
        sim.start()
        started.append(sim)
        return Harness(sim, tmp_path / ("h%d" % len(started)))

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def h(make):
    return make()


def stale(record, step, **data):
    """The record as a run killed at `step` on another host leaves it: its lease ran out."""
    record = dict(record)
    record["pending"] = dict({"rotation_id": "r-killed", "step": step, "started_at": "2020-01-01T00:00:00Z",
                              "holder": "other-host:4242", "lease_expires_at": "2020-01-01T00:01:00Z",
                              "secret_usable": step in ("granting", "continuing", "cancelling_previous")}, **data)
    return record


# ---- the life of a grant --------------------------------------------------------------------------------

def test_grant_rotate_revoke_cancel(h):
    created = h.run(id="app")
    first = h.record()
    assert created["action"] == "created" and created["verified"] == "authorized", created
    assert h.sim.token_works(first["secret"]) and "pending" not in first
    h.sim.reset_counts()
    assert h.run(id="app")["action"] == "none"
    assert h.sim.count(writes_only=True) == 0
    rotated = h.run(id="app", state="rotated")
    assert rotated["action"] == "rotated" and not h.sim.token_works(first["secret"]) and h.sim.token_works(h.record()["secret"])
    revoked = h.run(id="app", state="absent")
    assert revoked["action"] == "revoked" and revoked["revoked_on_server"] is True and "secret" not in h.record()
    cancelled = h.run(id="app", state="absent", scope="grant")
    assert cancelled["action"] == "revoked" and h.record() == {} and len(cancelled["cancelled_grants"]) == 1, cancelled


def test_by_default_the_resource_server_the_wallet_advertises_is_asked(h):
    """No verify_url: a signed GET to {resourceServer}/incoming-payments of the access item's wallet address."""
    h.run(id="app")
    h.sim.reset_counts()
    assert h.run(id="app")["action"] == "none"
    assert [(r.method, r.path, r.status) for r in h.sim.requests] == [
        ("GET", "/shop", 200), ("GET", "/rs/incoming-payments", 200)]
    assert h.sim.requests[1].query == {"wallet-address": [h.shop]}


def test_a_token_rotated_elsewhere_is_replaced_and_the_result_says_what_was_cut_off(h):
    h.run(id="app")
    old = h.record()
    theirs = h.rotate_elsewhere()
    h.sim.reset_counts()
    result = h.run(id="app")
    assert result["action"] == "recovered" and result["changed"], result
    assert "refused by the resource server" in result["msg"] or "no longer knows" in result["msg"], result
    assert result["lost_token_id"] == old["token_id"] and result["cancelled_grant"] and result["cancelled_already"] is False
    assert "still live" in result["cut_off"] and "another tool" in result["cut_off"] and result["cut_off"] in result["msg"]
    assert result["cut_off"] in json.dumps(result["warnings"]), result
    # What the result says is what happened: the other tool's token died with the grant; the stored one works.
    assert not h.sim.token_works(theirs) and h.sim.token_works(h.record()["secret"])
    assert h.as_requests() == [("POST", "token", 401), ("POST", "op", 200), ("DELETE", "continue", 204)]


def test_a_grant_cancelled_elsewhere_is_replaced_and_nothing_else_is_cut_off(h):
    h.run(id="app")
    old = h.record()
    with h.sim.lock:
        h.sim.grants[h.sim.grant_of(old["grant"]["continue_uri"])["id"]]["finalization"] = "revoked"
    result = h.run(id="app")
    assert result["action"] == "recovered" and result["cancelled_already"] is True, result
    assert "nothing else was cut off" in result["cut_off"], result
    assert h.sim.token_works(h.record()["secret"])


def test_without_verification_a_token_rotated_elsewhere_waits_for_its_expiry(h):
    h.run(id="app")
    h.rotate_elsewhere()
    h.sim.reset_counts()
    assert h.run(id="app", verify=False)["action"] == "none"
    assert h.sim.count() == 0


def test_a_wallet_of_another_authorization_server_is_not_asked(h, make):
    """The resource server of a wallet whose authServer is not `url` cannot judge this grant's tokens: the client's is asked."""
    elsewhere = make()
    access = [{"type": "incoming-payment", "actions": ["read"], "identifier": elsewhere.shop}]
    h.run(id="app", access=access)
    h.sim.reset_counts()
    assert h.run(id="app", access=access)["action"] == "none"
    assert [(r.method, r.path) for r in elsewhere.sim.requests] == [("GET", "/shop")] * 2
    asked = [r for r in h.sim.requests if r.path.startswith("/rs/")]
    assert len(asked) == 1 and asked[0].query == {"wallet-address": [h.client]} and asked[0].status == 403


def test_an_interactive_grant_result_carries_redirect_and_requested_at(h):
    predicted = h.run(id="payout", access=h.outgoing, check=True)
    assert predicted["action"] == "needs_interaction" and "redirect" in predicted and "grant_requested_at" in predicted
    asked = h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return")
    assert asked["action"] == "needs_interaction" and asked["redirect"] and asked["grant_requested_at"], asked
    waiting = h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return")
    assert waiting["action"] == "needs_interaction" and not waiting["changed"]
    assert waiting["redirect"] == asked["redirect"] and waiting["grant_requested_at"] == asked["grant_requested_at"]
    polled = h.run(id="poll", access=h.outgoing)
    again = h.run(id="poll", access=h.outgoing)
    assert again["action"] == "needs_interaction" and again["redirect"] == polled["redirect"] and again["grant_requested_at"]
    assert "pending" not in h.record("poll") and again["changed"] is False


def test_changed_access_replaces_the_grant_and_cancels_the_old_one(h):
    h.run(id="app")
    old = h.record()
    result = h.run(id="app", access=h.incoming[:1])
    assert result["action"] == "updated" and result["cancelled_grant"] and "cut_off" not in result, result
    assert not h.sim.token_works(old["secret"]) and h.sim.token_works(h.record()["secret"])


# ---- an intent left at every step ------------------------------------------------------------------------

def test_stale_rotating_whose_rotation_never_happened_rotates(h):
    h.run(id="app")
    old = h.record()
    h.write(stale(old, "rotating", token_id=old["token_id"]))
    result = h.run(id="app")
    assert result["action"] == "recovered" and result["recovered_step"] == "rotating", result
    assert h.sim.token_works(h.record()["secret"]) and "pending" not in h.record()


def test_stale_rotating_whose_rotation_happened_gets_a_new_grant(h):
    h.run(id="app")
    old = h.record()
    h.rotate_elsewhere()          # what the killed run's rotation did: the answer died with it
    h.write(stale(old, "rotating", token_id=old["token_id"]))
    result = h.run(id="app")
    assert result["action"] == "recovered" and result["cancelled_grant"] and "cut_off" not in result, result
    assert h.sim.token_works(h.record()["secret"]) and "pending" not in h.record()


def test_stale_granting_requests_again(h):
    h.write(stale({"product": "openpayments"}, "granting"))
    result = h.run(id="app")
    assert result["action"] == "recovered" and h.sim.token_works(h.record()["secret"]), result
    assert "cannot be cancelled" in json.dumps(result["warnings"])


def test_stale_cancelling_previous_cancels_again(h):
    h.run(id="app")
    h.run(id="app", access=h.incoming[:1])
    replaced = h.sim.grants
    record = h.record()
    first = [g for g in replaced.values() if g["finalization"] == "revoked"][0]
    record["previous"] = {"continue_uri": h.sim.auth_server + "/continue/" + first["continue_id"],
                          "continue_token": first["continue_token"], "token_id": "gone"}
    h.write(stale(record, "cancelling_previous"))
    result = h.run(id="app", access=h.incoming[:1])
    assert result["action"] == "recovered" and result["cancelled_already"] is True, result
    assert "previous" not in h.record() and h.sim.token_works(h.record()["secret"])


@pytest.mark.parametrize("step", ["revoking", "cancelling"])
def test_stale_revoking_or_cancelling_heals_in_a_present_run(h, step):
    h.run(id="app")
    old = h.record()
    if step == "revoking":
        with h.sim.lock:
            h.sim.tokens[old["token_id"]]["revoked_at"] = h.sim.clock.now()
    h.write(stale(old, step))
    result = h.run(id="app")
    assert result["action"] == "recovered" and h.sim.token_works(h.record()["secret"]), result


def test_stale_continuing_whose_continuation_issued_the_token_needs_reconcile(h):
    pending = h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return")
    approval = h.sim.approve(pending["redirect"].split("/interact/")[1].split("/")[0])
    ref = approval["interact_ref"]
    record = h.record("payout")
    assert h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return", interact_ref=ref)["action"] == "created"
    h.write(stale(record, "continuing", interact_ref=ref), "payout")   # as if the answer had died with the run
    result = h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return")
    assert result["failed"] and result["action"] == "needs_reconcile" and len(result["reconcile_steps"]) == 3, result
    assert "secret" not in h.record("payout") and "pending" not in h.record("payout")


def test_stale_continuing_that_never_reached_the_server_continues(h):
    pending = h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return")
    ref = h.sim.approve(pending["redirect"].split("/interact/")[1].split("/")[0])["interact_ref"]
    h.write(stale(h.record("payout"), "continuing", interact_ref=ref), "payout")
    result = h.run(id="payout", access=h.outgoing, finish_uri="https://client.example/return")
    assert result["action"] == "recovered" and h.sim.token_works(h.record("payout")["secret"]), result


def test_every_change_is_made_under_the_intent(h):
    """The change guard refuses a change sent without the intent (Harness.run fails on its "unexpected error"): a whole life
    with every kind of change passes with the guard on."""
    assert h.run(id="app")["action"] == "created"
    assert h.run(id="app", state="rotated")["action"] == "rotated"
    h.rotate_elsewhere()
    assert h.run(id="app")["action"] == "recovered"
    assert h.run(id="app", access=h.incoming[:1])["action"] == "updated"
    assert h.run(id="app", state="absent")["action"] == "revoked"
    assert h.run(id="app", state="absent", scope="grant")["action"] == "revoked"
    assert h.run(id="poll", access=h.outgoing, poll_timeout="1s")["action"] == "needs_interaction"


def test_a_change_without_the_intent_is_refused_and_not_sent(h, monkeypatch):
    h.run(id="app")

    def no_intent(self, token):
        return Plan("rotated", run=lambda t: self.rotate(t, "a step that forgot its intent"))

    monkeypatch.setattr(OpenPaymentsSteps, "present", no_intent)
    h.sim.reset_counts()
    result = h.run(id="app", bug_expected=True)
    assert result["failed"] and "IntentMissing" in result["msg"] and "nothing was sent" in result["msg"], result
    assert h.sim.count(writes_only=True) == 0 and h.sim.token_works(h.record()["secret"])
