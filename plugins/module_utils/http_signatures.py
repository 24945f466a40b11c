# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP Message Signatures (RFC 9421) exactly as Open Payments clients make them.

What Interledger's own client library (@interledger/http-signature-utils) emits and Rafiki
verifies: one signature labelled ``sig1``; covered components ``@method`` and ``@target-uri``,
then ``authorization`` when the request has one, then ``content-digest``, ``content-length`` and
``content-type`` when it has a body; parameters ``keyid`` then ``created``; pure Ed25519 over the
signature base (no pre-hash); ``Content-Digest: sha-512=:<base64>:`` over the compact JSON body.

`Signer` plugs into HttpClient.request(signer=...), which calls it for every attempt with the
exact bytes it sends.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import re
import time

try:
    from urllib.parse import urlsplit, urlunsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit, urlunsplit  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils.validators import shown

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - ansible-core depends on cryptography
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc

LABEL = "sig1"
# keyid is a structured-field string: printable ASCII without '"' and '\'.
KEY_ID_RE = re.compile(r'^[\x20\x21\x23-\x5b\x5d-\x7e]+$')
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _key_kind(key):
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa
    for kind, cls in (("RSA", rsa.RSAPrivateKey), ("EC", ec.EllipticCurvePrivateKey), ("DSA", dsa.DSAPrivateKey),
                      ("Ed448", ed448.Ed448PrivateKey)):
        if isinstance(key, cls):
            return kind
    return key.__class__.__name__


def load_private_key(text=None, path=None):
    """The client's Ed25519 private key from a PEM (file or string) or base64.

    base64 is what the Open Payments test wallet hands out and loadBase64Key() reads: the PEM
    text, base64-encoded. base64 of the PKCS#8 DER, or of the raw 32-byte seed, is taken too.
    Raises ValueError with a message that names the problem and never contains key material.
    """
    if not HAS_CRYPTOGRAPHY:
        raise ValueError("the Python library cryptography is required to sign Open Payments requests: %s" % CRYPTOGRAPHY_IMPORT_ERROR)
    where = "private_key_path %s" % path if path else "private_key"
    if path:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            raise ValueError("%s: cannot read the file: %s" % (where, exc.strerror or exc.__class__.__name__))
    else:
        data = (text or "").encode("utf-8") if not isinstance(text, bytes) else text
    data = data.strip()
    if not data:
        raise ValueError("%s is empty" % where)
    if b"-----BEGIN" not in data:
        try:
            decoded = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("%s is neither a PEM key nor base64" % where)
        if len(decoded) == 32:
            return ed25519.Ed25519PrivateKey.from_private_bytes(decoded)
        data = decoded
    try:
        if b"-----BEGIN" in data:
            if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
                raise ValueError("%s holds a public key; the client signs with its private key" % where)
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise ValueError("%s is encrypted with a passphrase; give the key unencrypted (keep it in ansible-vault instead)" % where)
    except (UnsupportedAlgorithm, ValueError) as exc:
        if "holds a public key" in str(exc):
            raise
        raise ValueError("%s could not be read as a private key (PKCS#8 PEM, as Open Payments wallets issue)" % where)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("%s is an %s key; Open Payments signs requests with Ed25519 keys only (JWK alg EdDSA, crv Ed25519)"
                         % (where, _key_kind(key)))
    return key


def public_jwk(private_key, key_id):
    """The JWK a wallet address publishes for this key (wallet-address-server.yaml json-web-key)."""
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kid": key_id, "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")}


def validate_key_id(key_id):
    if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
        raise ValueError("key_id %s must be printable ASCII without quotes or backslashes (it is the JWK kid)" % shown(key_id))


def content_digest(body):
    """RFC 9530 Content-Digest of the body with sha-512, as the reference client sends it."""
    return "sha-512=:%s:" % _b64(hashlib.sha512(body).digest())


def target_uri(url):
    """The absolute URL as RFC 9421 covers it: scheme and host lower-case, no default port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = "[%s]" % host
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(scheme):
        host = "%s:%d" % (host, parts.port)
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def signature_params(components, key_id, created):
    inner = " ".join('"%s"' % name for name in components)
    return '(%s);keyid="%s";created=%d' % (inner, key_id, created)


def signature_base(method, url, headers, components, params):
    """The RFC 9421 signature base: one line per component, then @signature-params; no trailing newline."""
    lower = dict((name.lower(), value) for name, value in headers.items())
    lines = []
    for name in components:
        if name == "@method":
            value = method.upper()
        elif name == "@target-uri":
            value = target_uri(url)
        else:
            value = str(lower[name]).strip()
        lines.append('"%s": %s' % (name, value))
    lines.append('"@signature-params": %s' % params)
    return "\n".join(lines)


class Signer:
    """signer(method, url, headers, body) -> the headers to add; for HttpClient.request(signer=...)."""

    def __init__(self, private_key, key_id, now=time.time):
        validate_key_id(key_id)
        self.private_key = private_key
        self.key_id = key_id
        self.now = now

    def __call__(self, method, url, headers, body):
        added = {}
        covered = dict(headers)
        components = ["@method", "@target-uri"]
        if any(name.lower() == "authorization" for name in headers):
            components.append("authorization")
        if body:
            content_type = [v for k, v in headers.items() if k.lower() == "content-type"]
            added["Content-Digest"] = content_digest(body)
            added["Content-Length"] = str(len(body))
            added["Content-Type"] = content_type[0] if content_type else "application/json"
            covered.update(added)
            components.extend(["content-digest", "content-length", "content-type"])
        params = signature_params(components, self.key_id, int(self.now()))
        base = signature_base(method, url, covered, components, params)
        added["Signature-Input"] = "%s=%s" % (LABEL, params)
        added["Signature"] = "%s=:%s:" % (LABEL, _b64(self.private_key.sign(base.encode("utf-8"))))
        return added
