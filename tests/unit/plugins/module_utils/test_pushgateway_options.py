"""The Pushgateway's grouping key in the URL, and the push options checked before any request."""

import base64

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import pushgateway


@pytest.mark.parametrize("job, slice_name, path", [
    ("tokenops_rotation", "", "metrics/job/tokenops_rotation/slice/all"),      # not sliced
    ("tokenops_rotation", "2", "metrics/job/tokenops_rotation/slice/2"),
    ("nightly eu", "1", "metrics/job/nightly%20eu/slice/1"),
    ("tokenops_rotation", "team/b", "metrics/job/tokenops_rotation/slice@base64/" + base64.urlsafe_b64encode(b"team/b").decode()),
    ("a/b", "x", "metrics/job@base64/YS9i/slice/x"),
])
def test_grouping_path(job, slice_name, path):
    assert pushgateway.grouping_path(job, [("slice", pushgateway.slice_value(slice_name))]) == path


def test_an_empty_label_value_is_a_single_equals_sign():
    assert pushgateway.grouping_path("j", [("slice", "")]) == "metrics/job/j/slice@base64/="


@pytest.mark.parametrize("options, message", [
    ({"url": "pushgateway:9091"}, "pushgateway.url must be"),
    ({"url": "https://user:pw@p.example"}, "must not carry a user name or password"),
    ({"url": "https://p.example", "job": " "}, "pushgateway.job must not be empty"),
    ({"url": "https://p.example", "job": "x", "token": "t", "username": "u", "password": "p"}, "not both"),
    ({"url": "https://p.example", "job": "x", "username": "u"}, "pushgateway.password is required"),
    ({"url": "https://p.example", "job": "x", "ca_path": "/no/such/ca.pem"}, "pushgateway.ca_path"),
    ({"url": "https://p.example", "job": "x", "timeout": 0}, "pushgateway.timeout"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        pushgateway.check(dict({"validate_certs": True, "timeout": 10}, **options))


def test_no_url_means_no_push_and_no_request():
    def no_client(*args, **kwargs):
        raise AssertionError("no client without a URL")

    result = pushgateway.push({"failures": [], "check_mode": False}, {"url": None, "job": "j"}, "", client_factory=no_client)
    assert result == {"enabled": False, "pushed": False, "grouping_key": {"job": "j", "slice": "all"}}
