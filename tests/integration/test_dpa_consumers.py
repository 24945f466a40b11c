"""The people who use a DPA refresh token the collection keeps, while an adoption runs and after one was killed.

They read the entry with the tokenops.rotation.token lookup (the refresh token) and the
tokenops.rotation.dpa_access_token lookup (an access token of it), both in process, and call DPA with what they get.
DPA's one intent step is `adopting`: the stored token stays current and works until the new one is promoted, so a
consumer gets a working token at every moment, never a dead one.
"""

import pytest
import requests

from conftest import wait_for
from dpa_fixtures import dpa_task, lookup, record_of, run_dpa
# Fixtures: pytest finds them by name in this module.
from consumer_fixtures import bao_store  # noqa: F401 pylint: disable=unused-import
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

TOKEN_PATH = r"^/iwc/api/security/oauth/token$"


def consumer_refresh_token(store, dpa):
    return lookup("token", ["dpa/%s/reporting" % dpa.host], store)[0]


def consumer_access_token(store, dpa):
    return lookup("dpa_access_token", ["reporting"], store, url=dpa.url, ca_path=dpa.ca_path)[0]


def monitors_status(dpa, access_token):
    return requests.get(dpa.url + "/iwc/api/databases/monitor-information", headers={"Authorization": "Bearer " + access_token},
                        verify=dpa.ca_path, timeout=30).status_code


def assert_consumers_work(store, dpa, expected):
    refresh = consumer_refresh_token(store, dpa)
    assert refresh == expected and dpa.sim.refresh_token_works(refresh), "a consumer got a dead or unexpected refresh token"
    assert monitors_status(dpa, consumer_access_token(store, dpa)) == 200


@pytest.fixture
def adoption(runner, dpa, bao_store):
    """'reporting-old' is stored; an administrator made 'reporting-new'; a task to adopt it."""
    old = dpa.issue("reporting-old")
    assert run_dpa(runner, dpa, bao_store, id="reporting", refresh_token=old)["action"] == "created"
    new = dpa.issue("reporting-new")
    task = dpa_task(dpa, bao_store, id="reporting", refresh_token=new, state="rotated", timeout=300)
    return old, new, task


def test_consumers_while_an_adoption_is_held(runner, dpa, bao_store, adoption):
    old, new, task = adoption
    dpa.sim.faults.add("POST", TOKEN_PATH, "latency", delay=300)
    proc, results = runner.start([task], env=dict(bao_store.env))
    wait_for(dpa.sim.faults.arrived.is_set, "the adoption's exchange of the new token", timeout=300)
    assert record_of(bao_store, dpa)["pending"]["step"] == "adopting"
    assert_consumers_work(bao_store, dpa, old)
    dpa.sim.faults.release.set()
    assert runner.finish(proc, results).result["action"] == "rotated"
    assert_consumers_work(bao_store, dpa, new)


def test_consumers_after_an_adoption_was_killed(runner, dpa, bao_store, adoption):
    old, new, task = adoption
    dpa.sim.faults.add("POST", TOKEN_PATH, "hang_after_commit", delay=300)
    proc, results = runner.start([task], env=dict(bao_store.env))
    wait_for(dpa.sim.faults.committed.is_set, "DPA to answer the adoption's exchange", timeout=300)
    runner.crash(proc, results, record_of(bao_store, dpa)["pending"])
    dpa.sim.faults.release.set()
    assert record_of(bao_store, dpa)["pending"]["new_secret"] == new
    assert_consumers_work(bao_store, dpa, old)
    assert run_dpa(runner, dpa, bao_store, id="reporting")["action"] == "recovered"
    assert_consumers_work(bao_store, dpa, new)


def test_access_token_lookup_losing_the_cache_race_still_hands_out_a_working_token(runner, dpa, bao_store, monkeypatch):
    from ansible_collections.tokenops.rotation.plugins.module_utils import rotation
    from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreConflict
    old = dpa.issue("reporting")
    assert run_dpa(runner, dpa, bao_store, id="reporting", refresh_token=old)["action"] == "created"
    cached = record_of(bao_store, dpa)
    dpa.sim.reboot()                                       # the cached access token is dead: the lookup exchanges again

    def another_writer_first(self, record):
        raise StoreConflict("another run wrote first")

    monkeypatch.setattr(rotation.Flow, "_write", another_writer_first)
    access = consumer_access_token(bao_store, dpa)
    assert monitors_status(dpa, access) == 200 and access != cached["access_token"]
    assert record_of(bao_store, dpa) == cached             # not cached, and nothing else written
