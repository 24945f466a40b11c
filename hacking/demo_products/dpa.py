"""SolarWinds DPA in `make demo`: two refresh tokens of one DPA server, one that expires in 90 days and one that never does."""

PRODUCT = "dpa"
GROUP = "dpa"
SIMULATOR_ARGS = ["--tls"]


def host_vars(info, store):
    # The refresh tokens reach the role through the environment (see environment()), never the inventory file.
    return {
        "dpa_url": info["url"],
        "dpa_ca_path": info.get("ca_path") or "",
        "dpa_store": store,
        "dpa_tokens": [
            {"id": name, "refresh_token": "{{ lookup('ansible.builtin.env', '%s') }}" % _variable(name)}
            for name in sorted(info["refresh_tokens"])
        ],
    }


def environment(info):
    return {_variable(name): token for name, token in info["refresh_tokens"].items()}


def _variable(name):
    return "TOKENOPS_DEMO_DPA_%s" % name.upper().replace("-", "_")
