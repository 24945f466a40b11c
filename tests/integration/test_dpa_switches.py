"""The module under every setting of the DPA simulator's switches (dpa.md 2.9: what DPA leaves open).

Each setting walks a refresh token's life in two playbooks: store it, validate it, adopt a new one,
refuse a forged one, hand out an access token; then, after DPA has killed that access token, hand
out a renewed one and remove the entry. The outcome must be the same whatever DPA does where its
documentation is silent.
"""

import pytest

from dpa_fixtures import dpa_task, record_of
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

SETTINGS = [
    {},
    {"bad_refresh_status": 401},
    {"bad_access_status": 403},
    {"error_style": "spring"},
    {"token_response": "minimal", "token_type": "Bearer"},
    {"access_lifetime": 365, "expires_in_field": "absent"},   # the module assumes 900 s; the probe finds the truth
    {"monitor_access": "forbidden"},
]


def access_token_tasks(dpa, store, monitor_status):
    task = dpa_task(dpa, store, id="reporting", name="access token", return_access_token=True)
    task["no_log"] = True
    use = {"url": dpa.url + "/iwc/api/databases/monitor-information", "ca_path": dpa.ca_path, "status_code": [monitor_status],
           "headers": {"Authorization": "Bearer {{ r.access_token }}"}}
    return [task,
            {"name": "use", "ansible.builtin.uri": use, "no_log": True},
            {"name": "show", "ansible.builtin.debug": {"msg": "{{ r.access_token_renewed }}"}}]


@pytest.mark.parametrize("switches", SETTINGS, ids=lambda s: ",".join("%s=%s" % kv for kv in s.items()) or "documented-defaults")
def test_refresh_token_life_under_each_setting(runner, dpa_factory, file_store, switches):
    dpa = dpa_factory(**switches)
    old, new = dpa.issue("reporting-old"), dpa.issue("reporting-new")
    monitor_status = 403 if switches.get("monitor_access") == "forbidden" else 200
    tasks = [
        dpa_task(dpa, file_store, id="reporting", refresh_token=old),
        dpa_task(dpa, file_store, id="reporting", refresh_token=old),
        dpa_task(dpa, file_store, id="reporting", refresh_token=new, state="rotated"),
        dpa_task(dpa, file_store, id="reporting", refresh_token=dpa.forged("reporting-forged"), state="rotated"),
    ] + access_token_tasks(dpa, file_store, monitor_status)
    run = runner.run(tasks, env={})
    assert run.rc == 0, run
    results = [r for r in run.results if r["_task"] == "dpa"]
    assert [r["action"] for r in results] == ["created", "none", "rotated", "failed"], [(r["action"], r.get("msg")) for r in results]
    assert results[1]["validated_by"] == "probe" and results[2]["previous"]["token_id"] == "reporting-old"
    assert results[3]["step"] == "verify" and "'reporting-new' stays current" in results[3]["msg"]
    assert run.results[-1]["msg"] is False                       # the cached access token of the adoption was handed out
    assert record_of(file_store, dpa)["secret"] == new

    # DPA's clock passes the access token's real lifetime; the controller's clock does not.
    dpa.sim.clock.advance(dpa.sim.access_lifetime + 35)
    run = runner.run(access_token_tasks(dpa, file_store, monitor_status) + [dpa_task(dpa, file_store, id="reporting", state="absent")],
                     env={})
    assert run.rc == 0, run
    assert run.results[2]["msg"] is True                         # the probe found it dead: exchanged again
    assert run.results[-1]["action"] == "removed" and record_of(file_store, dpa) == {}
