"""Styra DAS in `make demo`: three tokens of one tenant; the 24-hour one comes due when the clock moves 20 hours."""

PRODUCT = "das"
GROUP = "das"
SWITCHES = {}
ADVANCE = 20 * 3600


def host_vars(info, store):
    return {
        "das_url": info["url"],
        "das_ca_path": info.get("ca_path") or "",
        "das_store": store,
        "das_rotate_before": "6h",
        "das_tokens": [
            {"id": "systems/payments/opa", "description": "OPA of the payments system",
             "allow_path_patterns": ["^/v1/systems/payments/.*"], "ttl": "720h",
             "role_bindings": [{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "payments"}]},
            {"id": "ci-deployer", "description": "CI pipeline", "allow_path_patterns": ["^/v1/policies/.*"],
             "ttl": "168h", "strategy": "overlap", "grace_period": "1h"},
            {"id": "reporting", "description": "Nightly reports", "allow_path_patterns": ["^/v1/systems$"], "ttl": "24h"},
        ],
    }


def environment(info):
    return {"STYRA_DAS_TOKEN": info["admin_token"]}
