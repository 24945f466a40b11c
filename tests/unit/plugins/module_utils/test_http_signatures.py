# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The RFC 9421 signer (plugins/module_utils/http_signatures.py), and its interoperation with
Interledger's own @interledger/http-signature-utils in both directions.

The interop tests run the npm package with node (tests/interop/node, installed by `make`); where
node or the package is absent they skip with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import HttpClient
from ansible_collections.tokenops.rotation.plugins.module_utils.http_signatures import (
    Signer,
    load_private_key,
    public_jwk,
    signature_base,
    target_uri,
)
from tests.simulators.base import SimServer
from tests.simulators.openpayments import OpenPaymentsSimulator, signature_headers_valid, signature_valid

REPO = Path(__file__).resolve().parents[4]
NODE_DIR = REPO / "tests" / "interop" / "node"
KEY_ID = "key-1"
CREATED = 1724300000


def pem_of(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.fixture
def key():
    return ed25519.Ed25519PrivateKey.generate()


# ---------------------------------------------------------------- keys

def test_key_from_pem_string_file_and_base64(key, tmp_path):
    pem = pem_of(key)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / "client.pem"
    path.write_text(pem)
    forms = [load_private_key(pem), load_private_key(path=str(path)), load_private_key(base64.b64encode(pem.encode()).decode()),
             load_private_key(base64.b64encode(der).decode()), load_private_key(base64.b64encode(raw).decode())]
    for loaded in forms:
        assert public_jwk(loaded, KEY_ID) == public_jwk(key, KEY_ID)


@pytest.mark.parametrize("other, kind", [(lambda: rsa.generate_private_key(65537, 2048), "RSA"),
                                         (lambda: ec.generate_private_key(ec.SECP256R1()), "EC")], ids=["rsa", "ec"])
def test_key_that_is_not_ed25519_is_refused_without_showing_it(other, kind):
    pem = pem_of(other())
    with pytest.raises(ValueError) as info:
        load_private_key(pem)
    assert "is an %s key" % kind in str(info.value) and "Ed25519" in str(info.value)
    assert pem.splitlines()[1] not in str(info.value)


@pytest.mark.parametrize("text, needle", [
    ("", "is empty"),
    ("not a key at all!", "neither a PEM key nor base64"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "could not be read"),
])
def test_unreadable_keys_are_refused(text, needle):
    with pytest.raises(ValueError, match=needle):
        load_private_key(text)


def test_encrypted_and_public_keys_are_refused(key):
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"passphrase")).decode()
    with pytest.raises(ValueError, match="encrypted"):
        load_private_key(encrypted)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="public key"):
        load_private_key(public)


def test_missing_key_file():
    with pytest.raises(ValueError, match="cannot read the file"):
        load_private_key(path="/nonexistent/client.pem")


# ---------------------------------------------------------------- signatures

def test_rotate_request_is_signed_exactly_as_the_reference_client_does(key):
    url = "http://127.0.0.1:8080/auth/token/0b1e"
    added = Signer(key, KEY_ID, now=lambda: CREATED)("POST", url, {"Authorization": "GNAP TOKEN123"}, None)
    assert added["Signature-Input"] == 'sig1=("@method" "@target-uri" "authorization");keyid="key-1";created=1724300000'
    assert set(added) == {"Signature-Input", "Signature"}            # no body: no content headers
    base = ('"@method": POST\n"@target-uri": http://127.0.0.1:8080/auth/token/0b1e\n"authorization": GNAP TOKEN123\n'
            '"@signature-params": ("@method" "@target-uri" "authorization");keyid="key-1";created=1724300000')
    assert added["Signature"].startswith("sig1=:") and added["Signature"].endswith(":")
    key.public_key().verify(base64.b64decode(added["Signature"][6:-1]), base.encode())   # pure Ed25519 over the base


def test_body_is_covered_by_a_sha512_content_digest(key):
    body = b'{"access_token":{"access":[{"type":"quote","actions":["create"]}]},"client":"https://w.example/c"}'
    added = Signer(key, KEY_ID, now=lambda: CREATED)("POST", "https://as.example/t", {"Content-Type": "application/json"}, body)
    assert added["Content-Digest"] == "sha-512=:%s:" % base64.b64encode(hashlib.sha512(body).digest()).decode()
    assert added["Content-Length"] == str(len(body)) and added["Content-Type"] == "application/json"
    assert added["Signature-Input"] == ('sig1=("@method" "@target-uri" "content-digest" "content-length" "content-type")'
                                        ';keyid="key-1";created=1724300000')
    headers = {k.lower(): v for k, v in added.items()}
    assert signature_valid(public_jwk(key, KEY_ID), "POST", "https://as.example/t", headers)


def test_target_uri_is_the_normalised_absolute_url():
    assert target_uri("HTTPS://AS.Example:443/t/x?a=1") == "https://as.example/t/x?a=1"
    assert target_uri("http://127.0.0.1:8080") == "http://127.0.0.1:8080/"
    assert signature_base("get", "http://h:80/p", {}, ["@method", "@target-uri"], "()") == \
        '"@method": GET\n"@target-uri": http://h/p\n"@signature-params": ()'


def test_the_simulator_verifier_rejects_what_a_client_must_not_send(key):
    url, body = "http://127.0.0.1:1/auth/op", b'{"a":1}'
    added = Signer(key, KEY_ID)("POST", url, {"Authorization": "GNAP T"}, body)
    headers = {k.lower(): v for k, v in dict(added, Authorization="GNAP T").items()}
    jwk = public_jwk(key, KEY_ID)
    assert signature_headers_valid("POST", headers, body, strict=True) and signature_valid(jwk, "POST", url, headers)
    assert not signature_headers_valid("POST", headers, b'{"a":2}', strict=False)          # digest mismatch
    assert not signature_valid(jwk, "POST", url + "x", headers)                            # another URL
    assert not signature_valid(public_jwk(ed25519.Ed25519PrivateKey.generate(), KEY_ID), "POST", url, headers)
    without_auth = dict(headers)
    without_auth["signature-input"] = without_auth["signature-input"].replace(' "authorization"', "")
    assert not signature_headers_valid("POST", without_auth, body, strict=False)          # authorization must be covered


# ---------------------------------------------------------------- interop with @interledger/http-signature-utils

def _node():
    return shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)


needs_node = pytest.mark.skipif(
    _node() is None or not (NODE_DIR / "node_modules" / "@interledger" / "http-signature-utils").is_dir(),
    reason="needs node and @interledger/http-signature-utils: run `make interop` (npm ci in tests/interop/node)")


def node(command, payload):
    run = subprocess.run([_node(), str(NODE_DIR / "interop.js"), command], input=json.dumps(payload), capture_output=True,
                         text=True, timeout=60, check=False, cwd=str(NODE_DIR))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture
def sim(key):
    server = OpenPaymentsSimulator(wait=0)
    server.start()
    server.add_wallet("client", public_name="interop client", keys=[public_jwk(key, KEY_ID)])
    server.add_wallet("bob", public_name="Bob")
    yield server
    server.stop()


def node_signed(key, method, url, body=None, headers=None):
    payload = {"privateKeyPem": pem_of(key), "keyId": KEY_ID, "method": method, "url": url, "headers": dict(headers or {})}
    if body is not None:
        payload["body"] = body
    signed = node("sign", payload)["headers"]
    return dict(headers or {}, **signed)


def send(method, url, headers, body=None):
    import requests
    return requests.request(method, url, headers=headers, data=body.encode() if body else None, timeout=10)


def grant_body(sim):
    return json.dumps({"access_token": {"access": [{"type": "incoming-payment", "actions": ["create", "read"],
                                                    "identifier": sim.wallet_url("bob")}]},
                       "client": sim.wallet_url("client")})


@needs_node
@pytest.mark.parametrize("strict", [False, True], ids=["rafiki", "strict"])
def test_signatures_made_by_interledger_pass_the_simulator(sim, key, strict):
    sim.strict = strict
    body = grant_body(sim)
    headers = node_signed(key, "POST", sim.grant_url, body, {"Content-Type": "application/json"})
    assert 'sig1=("@method" "@target-uri" "content-digest" "content-length" "content-type");keyid="key-1";created=' \
        in headers["Signature-Input"]
    answer = send("POST", sim.grant_url, headers, body)
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    sim.issued.discard(token["value"])
    # Token management: no body, Authorization covered.
    auth = {"Authorization": "GNAP " + token["value"]}
    rotated = send("POST", token["manage"], node_signed(key, "POST", token["manage"], headers=auth))
    assert rotated.status_code == 200, rotated.text
    assert not sim.token_works(token["value"]) and sim.token_works(rotated.json()["access_token"]["value"])


@needs_node
def test_interledger_signatures_with_a_wrong_key_a_changed_body_or_url_are_rejected(sim, key):
    body = grant_body(sim)
    content = {"Content-Type": "application/json"}
    wrong_key = node_signed(ed25519.Ed25519PrivateKey.generate(), "POST", sim.grant_url, body, content)
    changed_body = node_signed(key, "POST", sim.grant_url, body, content)
    other_body = body.replace("read", "list")
    changed_body["Content-Length"] = str(len(other_body.encode()))
    changed_url = node_signed(key, "POST", sim.grant_url + "?x=1", body, content)
    answers = [send("POST", sim.grant_url, wrong_key, body), send("POST", sim.grant_url, changed_body, other_body),
               send("POST", sim.grant_url, changed_url, body)]
    assert [a.status_code for a in answers] == [401, 401, 401], [a.text for a in answers]
    assert [a.json()["error"]["description"] for a in answers] == ["invalid signature", "invalid signature headers", "invalid signature"]
    assert not sim.grants and not sim.tokens
    # The untouched request still passes: the rejections were the tampering.
    assert send("POST", sim.grant_url, node_signed(key, "POST", sim.grant_url, body, content), body).status_code == 200
    sim.issued.clear()


@pytest.fixture
def capture():
    """A server that keeps what it received, so node checks the bytes that travelled."""
    received = []

    def record(req):
        received.append(req)
        return 200, {"ok": True}

    server = SimServer()
    for method in ("GET", "POST", "DELETE"):
        server.route(method, r"^/.*$", record)
    server.start()
    yield server, received
    server.stop()


def collection_request(key, server, method, path, json_body=None, bearer=None):
    client = HttpClient("Open Payments", server.base_url)
    client.request("interop", method, path, json=json_body, bearer=bearer, scheme="GNAP", signer=Signer(key, KEY_ID))
    client.close()


def as_node_sees(server, req, body=None, url=None):
    return {"method": req.method, "url": url or server.base_url + req.target, "headers": dict(req.headers.items()),
            "body": (body if body is not None else req.body.decode()) or None}


@needs_node
def test_signatures_made_by_the_collection_pass_interledgers_validate_signature(key, capture):
    server, received = capture
    jwk = public_jwk(key, KEY_ID)
    grant_request = {"access_token": {"access": [{"type": "quote", "actions": ["create"]}]}, "client": "https://wallet.example/c",
                     "note": "Zoë"}
    collection_request(key, server, "POST", "/auth/op", json_body=grant_request)
    collection_request(key, server, "POST", "/auth/token/abc?x=1", bearer="TOKEN-1234567890")
    collection_request(key, server, "DELETE", "/auth/continue/def", bearer="CONT-1234567890")
    for req in received:
        assert node("validate", dict(as_node_sees(server, req), jwk=jwk)) == {"headersValid": True, "signatureValid": True}
    grant, rotate, _cancel = received
    assert "content-digest" in grant.headers["Signature-Input"] and "authorization" in rotate.headers["Signature-Input"]
    # A wrong key, a changed body and a changed URL are rejected by the library.
    other = public_jwk(ed25519.Ed25519PrivateKey.generate(), KEY_ID)
    assert node("validate", dict(as_node_sees(server, grant), jwk=other))["signatureValid"] is False
    changed = json.loads(grant.body)
    changed["client"] = "https://wallet.example/mallory"
    assert node("validate", dict(as_node_sees(server, grant, body=json.dumps(changed)), jwk=jwk)) == \
        {"headersValid": False, "signatureValid": False}
    assert node("validate", dict(as_node_sees(server, rotate, url=server.base_url + "/auth/token/other"), jwk=jwk))["signatureValid"] is False
