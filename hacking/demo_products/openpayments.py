"""Open Payments in `make demo`: three grants of one authorization server, two without consent and one with.

The simulator listens on the same port in every `make demo`: the manage and continuation URLs in the
store name it, and they must keep working when the demo runs again.
"""

import socket
from pathlib import Path

PRODUCT = "openpayments"
GROUP = "openpayments"

_PORT_FILE = Path(__file__).resolve().parents[2] / ".build" / "demo" / "openpayments.port"


def _stable_port():
    if _PORT_FILE.exists():
        return int(_PORT_FILE.read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _PORT_FILE.parent.mkdir(parents=True, exist_ok=True)
    _PORT_FILE.write_text(str(port))
    return port


SIMULATOR_ARGS = ["--tls", "--port", str(_stable_port())]


def host_vars(info, store):
    return {
        "openpayments_url": info["url"],
        "openpayments_ca_path": info.get("ca_path") or "",
        "openpayments_client_wallet_address": info["client_wallet_address"],
        "openpayments_key_id": info["key_id"],
        "openpayments_store": store,
        "openpayments_rotate_before": "2m",
        "openpayments_tokens": [
            {"id": "invoicing", "access": [{"type": "incoming-payment", "actions": ["create", "read", "list"], "identifier": info["shop"]},
                                           {"type": "quote", "actions": ["create", "read"]}]},
            {"id": "quotes", "access": [{"type": "quote", "actions": ["create", "read"]}]},
            {"id": "monthly-payout", "finish_uri": "https://client.example/return",
             "access": [{"type": "outgoing-payment", "actions": ["create", "read"], "identifier": info["alice"],
                         "limits": {"interval": "R12/2026-01-01T00:00:00Z/P1M",
                                    "debitAmount": {"value": "50000", "assetCode": "USD", "assetScale": 2}}}]},
        ],
    }


def environment(info):
    return {"OPEN_PAYMENTS_PRIVATE_KEY": info["private_key"]}
