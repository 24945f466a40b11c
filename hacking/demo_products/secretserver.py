"""Delinea Secret Server in `make demo`: two API users of an on-premises server, and a Delinea Platform token."""

PRODUCT = "secretserver"
GROUP = "secretserver"
# A 12-hour API session timeout (an administrator's setting): a second `make demo` the same day still
# finds every access token live and changes nothing.
SIMULATOR_ARGS = ["--tls", "--switch", "session_timeout_s=43200"]


def host_vars(info, store):
    users = info["users"]
    return {
        "secretserver_url": info["url"],
        "secretserver_ca_path": info.get("ca_path") or "",
        "secretserver_store": store,
        "secretserver_rotate_before": "20%",
        "secretserver_tokens": [
            {"id": "automation", "username": users[0]["username"]},
            {"id": "reports", "username": users[1]["username"], "domain": users[1]["domain"]},
        ],
    }


def environment(info):
    # Both demo users share the password the simulator made for them.
    return {"TSS_PASSWORD": info["password"]}
