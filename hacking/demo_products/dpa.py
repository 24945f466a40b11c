"""SolarWinds DPA in `make demo`: three refresh tokens of one DPA server - one for 90 days, one that never
expires, and one an administrator must replace within three weeks (inside warn_before).

DPA has no API that rotates refresh tokens: the job validates them, and the report says which one a
person must replace in DPA's web interface, and by when.
"""

PRODUCT = "dpa"
GROUP = "dpa"
SWITCHES = {}
ADVANCE = 20 * 3600


def prepare(sim, info):
    # Made "yesterday" as the clock stands now, with 21 days left once it moves forward.
    info["refresh_tokens"]["legacy-export"] = sim.issue_refresh_token("legacy-export", lifetime=ADVANCE + 21 * 86400)


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
