"""No DPA refresh or access token in any output: the playbooks run at -vvvv, failing runs included.

Canaries: every token the DPA simulator issued (refresh tokens and the access tokens of every
exchange), forged and malformed tokens given as input, and the store's credential (the OpenBao root
token or the file store's password). Searched: stdout and stderr of every run, the task results
Ansible handed to callbacks, the simulator's own log, and the file store on disk.
"""

import secrets

import pytest

import conftest
from dpa_fixtures import dpa_task
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = [pytest.mark.integration, pytest.mark.playbook]   # the -vvvv output of Ansible is what is searched


def scenario(runner, dpa, store):
    """Everything a user does with DPA refresh tokens, and several ways to fail."""
    first, second, third, deleted = dpa.issue("reporting-1"), dpa.issue("reporting-2"), dpa.issue("reporting-3"), dpa.issue("gone")
    dpa.sim.delete_refresh_token(deleted)
    malformed = "not-a-jwt-" + secrets.token_urlsafe(16)
    dpa.extra_canaries.add(malformed)
    lookup = "{{ lookup('tokenops.rotation.dpa_access_token', '%%s', url='%s', ca_path='%s', store=%r) }}" % (dpa.url, dpa.ca_path, store.options)
    use = {"url": dpa.url + "/iwc/api/databases/monitor-information", "ca_path": dpa.ca_path,
           "headers": {"Authorization": "Bearer " + lookup % "reporting"}}

    def task(**options):
        return dpa_task(dpa, store, **options)

    hidden = dict(task(id="reporting", return_access_token=True), no_log=True)
    main = [
        task(id="reporting", refresh_token=first),
        task(id="reporting", refresh_token=first),
        task(id="reporting", refresh_token=second, state="rotated"),
        task(id="reporting"),                                                                  # the stored token, not an input
        task(id="reporting", refresh_token=dpa.forged("reporting-x"), state="rotated"),        # refused: DPA never made it
        task(id="reporting", refresh_token=deleted, state="rotated"),                          # refused: deleted in DPA
        task(id="reporting", refresh_token=malformed),                                         # bad input
        task(id="reporting", return_access_token=True),                                        # refused: no no_log
        task(id="reporting", return_secret=True),                                              # refused: no no_log
        hidden,
        {"name": "use it", "ansible.builtin.uri": dict(use, headers={"Authorization": "Bearer {{ r.access_token }}"}), "no_log": True},
        {"name": "lookup", "ansible.builtin.uri": use, "no_log": True},
        {"name": "info", "tokenops.rotation.dpa_refresh_token_info": {"url": dpa.url, "ca_path": dpa.ca_path, "store": store.options}},
        task(id="short", refresh_token=dpa.issue("short", days=2)),                            # fails: within fail_before
        task(id="short", state="absent"),
    ]
    env = dict(store.env)
    runs = [runner.run(main, env=env, diff=True)]
    runs.append(runner.run([task(id="reporting", refresh_token=third, state="rotated")], env=env, check=True, diff=True))
    dpa.sim.reboot()
    dpa.sim.faults.add("POST", r"/security/oauth/token$", "status", status=500)
    runs.append(runner.run([{"name": "lookup fails", "ansible.builtin.uri": use, "no_log": False, "ignore_errors": True},
                            {"name": "lookup renews", "ansible.builtin.uri": use, "no_log": True},
                            task(id="reporting", refresh_token=third, state="rotated")], env=env, diff=True))
    dpa.sim.delete_refresh_token(third)
    dpa.sim.reboot()
    runs.append(runner.run([{"name": "dead lookup", "ansible.builtin.uri": use, "ignore_errors": True},
                            task(id="reporting")], env=env))
    return runs


def test_no_token_in_any_output(runner, dpa, store):
    first_output = len(conftest.OUTPUTS)
    runs = scenario(runner, dpa, store)
    results = [r for run in runs for r in run.results]
    assert sum(1 for r in results if r.get("failed")) >= 7                  # failures were exercised
    assert {"created", "rotated", "removed", "needs_reconcile"} <= {r.get("action") for r in results}
    assert any("expires at" in r.get("msg", "") for r in results)            # the fail_before failure, with its message
    canaries = set(dpa.sim.issued) | dpa.extra_canaries
    assert len([t for t in dpa.sim.issued if t.count(".") == 2]) >= 10      # refresh and access tokens alike
    conftest.assert_no_leaks(first_output, canaries, store)
