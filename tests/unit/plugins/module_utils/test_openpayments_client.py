# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open Payments client helpers: the access list checks, the interaction hash, and how errors are read."""

import base64
import hashlib

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments import (
    grant_gone,
    interaction_hash,
    management_id,
    needs_interaction,
    token_dead,
    validate_access,
)

ALICE = "https://wallet.example/alice"
DEBIT = {"value": "500", "assetCode": "USD", "assetScale": 2}


def test_a_valid_access_list_is_normalised():
    access = validate_access([{"type": "outgoing-payment", "actions": ["create", "read"], "identifier": ALICE, "limits":
                               {"receiver": "https://w.example/incoming-payments/1", "interval": "R12/2026-01-01T00:00:00Z/P1M",
                                "debitAmount": dict(DEBIT, value=500)}},
                              {"type": "quote", "actions": ["create"], "identifier": None, "limits": None}])
    assert access[0]["limits"]["debitAmount"]["value"] == "500" and access[1] == {"type": "quote", "actions": ["create"]}
    assert needs_interaction(access) and not needs_interaction(access[1:])


@pytest.mark.parametrize("access, needle", [
    ([], "at least one"),
    ([{"type": "quote", "actions": ["create"]}] * 4, "lists 4 items"),
    ([{"type": "payment", "actions": ["create"]}], "type must be one of"),
    ([{"type": "quote", "actions": []}], "actions must list"),
    ([{"type": "quote", "actions": ["create", "create"]}], "must not repeat"),
    ([{"type": "incoming-payment", "actions": ["read"], "identifier": "alice"}], "wallet address URL"),
    ([{"type": "outgoing-payment", "actions": ["read"]}], "needs identifier"),
    ([{"type": "outgoing-payment", "actions": ["read"], "identifier": ALICE, "limits": {"receiver": "https://x/y"}}], "incoming payment URL"),
    ([{"type": "outgoing-payment", "actions": ["read"], "identifier": ALICE, "limits": {"interval": "monthly"}}], "repeating interval"),
    ([{"type": "outgoing-payment", "actions": ["read"], "identifier": ALICE, "limits": {"debitAmount": dict(DEBIT, value=str(2 ** 64))}}],
     "unsigned 64-bit"),
    ([{"type": "outgoing-payment", "actions": ["read"], "identifier": ALICE, "limits": {"debitAmount": dict(DEBIT, assetScale=256)}}],
     "0 to 255"),
    ([{"type": "outgoing-payment", "actions": ["read"], "identifier": ALICE, "limits": {"debitAmount": {"value": "1"}}}],
     "value, assetCode and assetScale"),
    ([{"type": "quote", "actions": ["create"], "colour": "red"}], "unknown key(s) colour"),
])
def test_bad_access_lists_are_refused(access, needle):
    with pytest.raises(ValueError) as info:
        validate_access(access)
    assert needle in str(info.value)


def test_interaction_hash_is_sha256_of_the_four_lines_unpadded():
    expected = base64.b64encode(hashlib.sha256(b"c\na\nr\nhttps://as.example/t").digest()).decode().rstrip("=")
    assert interaction_hash("c", "a", "r", "https://as.example/t") == expected


def test_errors_are_read_as_the_reference_server_means_them():
    def error(status, code, message):
        return ApiError("Open Payments", "step", "POST", "https://as/x", status=status, code=code, message=message)
    assert token_dead(error(401, "invalid_client", "invalid access token"))
    assert not token_dead(error(401, "invalid_client", "invalid signature"))          # the key is wrong, not the token
    assert not token_dead(error(400, "invalid_client", "could not determine client"))
    assert grant_gone(error(401, "invalid_continuation", "invalid grant")) and grant_gone(error(404, "invalid_request", "unknown grant"))
    assert not grant_gone(error(401, "invalid_client", "invalid signature headers"))
    assert management_id("https://as.example/auth/token/8f69de01/") == "8f69de01" and management_id(None) is None
