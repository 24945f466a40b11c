"""Delinea Secret Server in `make demo`: two API users of an on-premises server. Their access tokens live
20 minutes (the server's session timeout); when the clock moves 25 minutes they have expired and are
refreshed with their refresh tokens, which live 15 minutes longer."""

PRODUCT = "secretserver"
GROUP = "secretserver"
SWITCHES = {"session_timeout_s": 1200}
ADVANCE = 25 * 60


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
