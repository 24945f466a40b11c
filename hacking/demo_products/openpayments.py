"""Open Payments in `make demo`: three grants of one authorization server, two without consent and one with.

Access tokens live 10 minutes; when the clock moves 15 minutes the resource server refuses them
(verify_url), and they are rotated. The outgoing-payment grant waits for the resource owner's consent:
the report gives the URL where they approve it.
"""

from urllib.parse import urlencode

PRODUCT = "openpayments"
GROUP = "openpayments"
SWITCHES = {}
ADVANCE = 15 * 60


def host_vars(info, store):
    # Listing the shop's incoming payments changes nothing; the resource server needs the wallet address to answer
    # (400 without it, and the module would then judge the tokens by their expiry only).
    verify_url = "%s/rs/incoming-payments?%s" % (info["base_url"], urlencode({"wallet-address": info["shop"]}))
    return {
        "openpayments_url": info["url"],
        "openpayments_ca_path": info.get("ca_path") or "",
        "openpayments_client_wallet_address": info["client_wallet_address"],
        "openpayments_key_id": info["key_id"],
        "openpayments_store": store,
        "openpayments_rotate_before": "2m",
        "openpayments_tokens": [
            {"id": "invoicing", "verify_url": verify_url,
             "access": [{"type": "incoming-payment", "actions": ["create", "read", "list"], "identifier": info["shop"]},
                        {"type": "quote", "actions": ["create", "read"]}]},
            {"id": "quotes", "verify_url": verify_url, "access": [{"type": "quote", "actions": ["create", "read"]}]},
            {"id": "monthly-payout", "finish_uri": "https://client.example/return",
             "access": [{"type": "outgoing-payment", "actions": ["create", "read"], "identifier": info["alice"],
                         "limits": {"interval": "R12/2026-01-01T00:00:00Z/P1M",
                                    "debitAmount": {"value": "50000", "assetCode": "USD", "assetScale": 2}}}]},
        ],
    }


def environment(info):
    return {"OPEN_PAYMENTS_PRIVATE_KEY": info["private_key"]}
