# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Push the report's Prometheus metrics to a Pushgateway, where they outlive the job that made them.

An AWX job runs in a container that is gone when it ends, and has no node_exporter: the
Prometheus ecosystem's answer for batch jobs is the Pushgateway. Its HTTP API (the Pushgateway's
README, "API"): `PUT /metrics/job/<job>{/<label>/<value>}` replaces every metric of that grouping
key with the body (text format 0.0.4); a label value with a `/`, or an empty one, goes as
`<label>@base64/<RFC 4648 URL-safe base64>` (a single `=` for the empty value). The grouping key is
the job and the slice, so the slices of a sliced AWX job each keep their own group.

A push that fails is a warning of the report, never a failed job: the report, its files and the
set_stats still reach people. The request goes through the one HTTP layer (TLS, CA file,
timeouts, retries, redaction of the credentials).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError, HttpClient
from ansible_collections.tokenops.rotation.plugins.module_utils.report import LAST_SUCCESS, to_prometheus

PRODUCT = "Pushgateway"
DEFAULT_JOB = "tokenops_rotation"
SLICE_LABEL = "slice"
UNSLICED = "all"     # the slice label's value for a job that is not sliced
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
URL_WHAT = "the Pushgateway's base URL such as https://pushgateway.example.com:9091"

# Suboptions of rotation_report's `pushgateway`; the credential type tokenops.rotation: Pushgateway
# injects the variables.
SPEC = dict(
    url=dict(type="str", fallback=(validators.env_fallback, ["TOKENOPS_PUSHGATEWAY_URL"])),
    job=dict(type="str", default=DEFAULT_JOB),
    username=dict(type="str", fallback=(validators.env_fallback, ["TOKENOPS_PUSHGATEWAY_USERNAME"])),
    password=dict(type="str", no_log=True, fallback=(validators.env_fallback, ["TOKENOPS_PUSHGATEWAY_PASSWORD"])),
    token=dict(type="str", no_log=True, fallback=(validators.env_fallback, ["TOKENOPS_PUSHGATEWAY_TOKEN"])),
    ca_path=dict(type="path", fallback=(validators.env_fallback, ["TOKENOPS_PUSHGATEWAY_CA_PATH"])),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="float", default=10),
)


def slice_value(slice_name):
    """The grouping key's slice: the slice's name, or `all` for a job that is not sliced."""
    return slice_name if slice_name else UNSLICED


def grouping_path(job, labels):
    """`metrics/job/<job>/<label>/<value>...`, each value URL-encoded or, where it must be, base64."""
    parts = ["metrics"]
    for name, value in [("job", job)] + list(labels):
        if value == "":
            parts += [name + "@base64", "="]
        elif "/" in value:
            parts += [name + "@base64", base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii")]
        else:
            parts += [name, quote(value, safe="")]
    return "/".join(parts)


def check(options):
    """The pushgateway options, normalised; ValueError names the option. None when no URL is set (no push)."""
    options = dict(options or {})
    if not options.get("url"):
        return None
    options["url"] = validators.url(options["url"], "pushgateway.url", what=URL_WHAT)
    options["job"] = validators.text(options.get("job"), "pushgateway.job")
    if options.get("token") is not None:
        options["token"] = validators.text(options["token"], "pushgateway.token", secret=True)
    if options.get("username") is not None or options.get("password") is not None:
        if options.get("token"):
            raise ValueError("pushgateway: give either username and password (basic auth) or token (bearer), not both")
        options["username"] = validators.username(options.get("username"), "pushgateway.username")
        options["password"] = validators.text(options.get("password"), "pushgateway.password", secret=True)
    options["ca_path"] = validators.readable_file(options.get("ca_path"), "pushgateway.ca_path")
    options["timeout"] = validators.timeout(options.get("timeout", 10), "pushgateway.timeout", maximum=600)
    return options


def _authorization(options, client):
    """(credential, scheme) for the Authorization header; the credential is masked in every message."""
    if options.get("token"):
        return options["token"], "Bearer"
    if options.get("username"):
        client.redactor.add(options["password"])
        pair = "%s:%s" % (options["username"], options["password"])
        return base64.b64encode(pair.encode("utf-8")).decode("ascii"), "Basic"
    return None, "Bearer"


def _last_success(client, grouping, credential, scheme):
    """The group's last success as the Pushgateway holds it (its query API, GET /api/v1/metrics); None if it has none."""
    response = client.request("read the last success", "GET", "api/v1/metrics", bearer=credential, scheme=scheme)
    try:
        groups = response.json().get("data") or []
    except (ValueError, AttributeError):
        return None
    for group in groups:
        if not isinstance(group, dict) or group.get("labels") != grouping:
            continue
        for sample in (group.get(LAST_SUCCESS) or {}).get("metrics") or []:
            try:
                return int(float(sample.get("value")))
            except (TypeError, ValueError):
                return None
    return None


def push(report, options, slice_name="", client_factory=HttpClient):
    """Push the run's metrics; returns what happened, with `warning` set when they did not reach the Pushgateway.

    A run that fails the job carries the group's last success over, read back from the Pushgateway,
    since PUT replaces the whole group.
    """
    grouping = {"job": (options or {}).get("job") or DEFAULT_JOB, SLICE_LABEL: slice_value(slice_name)}
    result = {"enabled": False, "pushed": False, "grouping_key": grouping}
    try:
        options = check(options)
    except ValueError as exc:
        result.update(enabled=True, warning="The metrics were not pushed to the Pushgateway: %s" % exc)
        return result
    if options is None:
        return result
    grouping["job"] = options["job"]
    path = grouping_path(options["job"], [(SLICE_LABEL, grouping[SLICE_LABEL])])
    result.update(enabled=True, url=options["url"], path="/" + path)
    client = client_factory(PRODUCT, options["url"], validate_certs=options["validate_certs"], ca_path=options["ca_path"],
                            timeout=options["timeout"], retries=2, pool_size=1)
    credential, scheme = _authorization(options, client)
    try:
        earlier = None
        if report["failures"] and not report["check_mode"]:
            try:
                earlier = _last_success(client, grouping, credential, scheme)
            except ApiError as exc:
                result["last_success_unknown"] = str(exc)
        body = to_prometheus(report, last_success=earlier).encode("utf-8")
        client.request("push the metrics", "PUT", path, data=body, headers={"Content-Type": CONTENT_TYPE},
                       bearer=credential, scheme=scheme, idempotent=True, ok=(200, 202))
        result["pushed"] = True
        if result.get("last_success_unknown"):
            result["warning"] = ("The metrics were pushed, but the group's last success could not be read back (%s): "
                                 "%s is absent until a run succeeds" % (result["last_success_unknown"], LAST_SUCCESS))
    except ApiError as exc:
        result["warning"] = ("The metrics were not pushed to the Pushgateway (%s): %s. The report and its files are written; "
                             "alerts on the Pushgateway's metrics see the previous run" % (options["url"], exc))
    finally:
        client.close()
    return result
