#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rotation_report
short_description: Write the report across products of a rotation run (JSON, Markdown, HTML, Prometheus metrics)
version_added: 0.2.0
description:
  - Turns what the product roles recorded about a run into one row per token, sorted by urgency,
    with what a person must do (the steps of a V(needs_reconcile), the consent URL of an Open
    Payments grant, the DPA refresh token to replace in DPA's web interface with the date it dies).
  - Says which items fail the job (O(fail_on)) and, with O(fail=true), fails after writing.
  - Writes a JSON document, a Markdown page, a self-contained HTML page and a Prometheus text file
    for the node_exporter textfile collector. Each file is written to a temporary file in its
    directory and renamed, so a reader never sees half a file.
  - Lists what the DAS tenant audit found (tokens no inventory host manages, tokens that allow every
    path, tokens that practically never expire), once per tenant.
  - Copies only the fields it names from the results it is given, so no secret reaches a report.
  - Runs on the controller (C(delegate_to=localhost)); playbook C(tokenops.rotation.rotate) calls it
    once at the end of every run, check runs included.
  - The report of a check run (its O(sources) say C(check_mode)) is a prediction. It is marked as one
    (RV(prediction), and in the title of the Markdown and HTML pages) and written as C(<name>-check.json),
    C(<name>-check.md) and C(<name>-check.html), so that the report of the last real run stays as it is. No
    Prometheus file is written for it, because a prediction must not replace the metrics that alerts read.
author:
  - tokenops developers (@tokenops)
attributes:
  check_mode:
    support: full
    description: Builds the report and returns it, writes no file. Playbook C(tokenops.rotation.rotate) runs
      it with C(check_mode=false), so that a check run writes its prediction (see the description).
  diff_mode:
    support: none
    description: A report is not state; it has no diff.
options:
  sources:
    description:
      - What each product role recorded for each inventory host (the facts C(das_rotation_record),
        C(dpa_rotation_record), C(secretserver_rotation_record), C(openpayments_rotation_record)).
      - Each is a dictionary with C(product), C(endpoint) (the inventory host), C(url), C(check_mode),
        C(configured) (the token ids the host keeps, or C(configured_file), the tokens file the module read,
        whose ids are read here), C(removing) (the ids it removes), what the
        tasks returned (C(read), C(rotate), C(cleanup), C(audit)), and C(error) when the role
        itself failed.
      - One of O(sources) and O(merge) is required.
      - A stage with C(report_spool) (the module's option of that name) is read from that file, so
        that a task result as large as the fleet need not pass through the playbook. A DAS stage
        that audited its tenant (C(das_token) with C(audit=true)) is the source's audit too.
    type: list
    elements: dict
  merge:
    description:
      - Instead of O(sources), merge the JSON reports that job slices wrote (paths, or glob patterns such as
        C(/reports/tokenops-rotation.slice-*.json)) into the report one run over all their hosts would have made.
      - One row per token. Each row keeps the slice's outcome and is judged again against this task's O(fail_on) and
        O(consent_wait_limit); the DAS tenant audit is merged across slices, so a token that a host in another slice
        manages is not reported unmanaged; counts are recounted.
      - A token found in two reports (the same host in two slices, or reports of two runs) keeps the row of the newer
        report, with a warning. A pattern that matches nothing, or a file that is not such a report, fails before
        anything is written.
      - RV(slices) lists the reports merged. Writes the same files as an unsliced run, under O(name).
    type: list
    elements: path
  slice:
    description:
      - The job slice this run is, for jobs that AWX job slicing splits (playbook C(tokenops.rotation.rotate) sets it
        from C(tokenops_slice), or from C(awx_job_id) with C(tokenops_sliced=true)). Empty when the job is not sliced.
      - A slice's files are C(<name>.slice-<slice>.json) and so on (and C(prometheus_path) gets C(.slice-<slice>)
        before C(.prom)), its Prometheus series carry a C(slice) label, and RV(stats_key) is
        C(tokenops_rotation_report_slice_<slice>), so that slices never overwrite each other's files, metrics or
        workflow artifacts. It is also the C(slice) label of the Pushgateway grouping key (O(pushgateway)), V(all)
        when empty, so that each slice keeps its own group of metrics.
      - Letters, digits, C(_), C(.) and C(-), at most 63 characters.
    type: str
    default: ''
  dest:
    description:
      - Folder of the report files; created when missing.
    type: path
    default: ~/.ansible/tokenops/reports
  name:
    description: File name of the reports without extension (C(<name>.json), C(.md), C(.html), C(.prom)).
    type: str
    default: tokenops-rotation
  formats:
    description: Which files to write; an empty list writes none (the report is returned all the same).
    type: list
    elements: str
    choices: [json, markdown, html, prometheus]
    default: [json, markdown, html, prometheus]
  prometheus_path:
    description:
      - Where the Prometheus file goes instead of O(dest), for example the node_exporter textfile
        collector's folder (C(/var/lib/node_exporter/textfile_collector/tokenops.prom)). It must end in C(.prom).
    type: path
  fail_on:
    description:
      - The conditions that fail the job. V(needs_reconcile), V(failed) (a token failed, or ended
        without a stored secret), V(dpa_fail_before) (a DPA refresh token inside its
        C(fail_before), or expired), V(consent_overdue) (an Open Payments grant waiting for
        consent longer than O(consent_wait_limit)), V(needs_interaction) (a Secret Server user
        who must log in with a one-time code), V(backed_off_stale) (another run held a token and
        its lease had run out).
      - Also possible, for stricter jobs, V(consent_waiting), V(dpa_warn_before), V(manual_step),
        V(das_unmanaged), V(das_all_paths), V(das_never_expires) and V(backed_off) (another,
        live run held a token).
    type: list
    elements: str
    default: [needs_reconcile, failed, dpa_fail_before, consent_overdue, needs_interaction, backed_off_stale]
  consent_wait_limit:
    description:
      - How long an Open Payments grant may wait for the resource owner's consent before it fails
        the job (V(consent_overdue)); until then it is a person's task in the report.
      - A duration (C(1d), C(12h), C(30m)).
    type: str
    default: 1d
  fail:
    description:
      - Fail after writing the files when an item matches O(fail_on); the message lists each with
        what to do.
    type: bool
    default: false
  pushgateway:
    description:
      - Push the run's Prometheus metrics to a Prometheus Pushgateway, where they outlive the job
        (an AWX job's container, with its files, is gone when it ends). Each push replaces the
        group of the grouping key C(job=<job>), C(slice=<slice>) (HTTP C(PUT) of the Pushgateway's
        API), so a group always holds exactly the last run's metrics.
      - "Pushes when O(pushgateway.url) is set, here or in E(TOKENOPS_PUSHGATEWAY_URL); the AWX
        credential type C(tokenops.rotation: Pushgateway) sets the variables."
      - A push that fails is a warning (of the task, in RV(summary) and in the JSON and Markdown reports' C(warnings)),
        never a failed task. Check mode pushes nothing.
      - When the run fails the job, C(tokenops_rotation_last_success_timestamp_seconds) keeps the
        value the group had (read back with the Pushgateway's C(GET /api/v1/metrics)).
    type: dict
    suboptions:
      url:
        description:
          - The Pushgateway's base URL, such as C(https://pushgateway.example.com:9091) (a path
            prefix is kept). Without it, nothing is pushed.
          - Falls back to E(TOKENOPS_PUSHGATEWAY_URL).
        type: str
      job:
        description: The C(job) label of the grouping key.
        type: str
        default: tokenops_rotation
      username:
        description:
          - User name for HTTP basic auth (the Pushgateway's C(--web.config.file) C(basic_auth_users),
            or a proxy in front of it). Falls back to E(TOKENOPS_PUSHGATEWAY_USERNAME).
        type: str
      password:
        description: Password for basic auth. Falls back to E(TOKENOPS_PUSHGATEWAY_PASSWORD).
        type: str
      token:
        description:
          - Bearer token (sent as an C(Authorization) header of scheme C(Bearer), for a proxy in front of the Pushgateway); not
            together with O(pushgateway.username). Falls back to E(TOKENOPS_PUSHGATEWAY_TOKEN).
        type: str
      ca_path:
        description:
          - CA certificate file (PEM) that signed the Pushgateway's TLS certificate. Falls back to
            E(TOKENOPS_PUSHGATEWAY_CA_PATH).
        type: path
      validate_certs:
        description: Check the Pushgateway's TLS certificate.
        type: bool
        default: true
      timeout:
        description: Seconds to wait for the Pushgateway's answer.
        type: float
        default: 10
  set_stats:
    description:
      - Hand RV(stats) under RV(stats_key), and RV(tokens) under C(tokenops_rotation_tokens) (with the slice's suffix
        of RV(stats_key)), to the next node of an AWX workflow, as a C(ansible.builtin.set_stats) task with
        C(per_host=false) and C(aggregate=true) would. The task result carries them as RV(ansible_stats),
        which Ansible keeps as the run's custom stats (ansible-runner's C(artifact_data)).
      - A C(set_stats) task would template every token's result again; at thousands of tokens that costs the job
        seconds of CPU. Playbook C(tokenops.rotation.rotate) sets this.
      - Nothing is handed on when the task fails.
    type: bool
    default: false
  spool_dir:
    description:
      - The job's spool folder, where the modules wrote their results (their option C(report_spool)). After the
        report is written, the spool files the O(sources) name are removed from it, and then the folder. Other files
        are left, with the folder and a warning.
      - Playbook C(tokenops.rotation.rotate) passes the folder it made for the run, so that no further task (and no
        further module process) is needed to clean up. Check mode removes nothing.
    type: path
  return_rows:
    description:
      - Return what grows with the number of tokens in the task result, RV(rows), RV(tokens) and RV(scope).
      - With V(false) the result keeps the summary, the counts and the items that need a person
        (RV(needs_person), RV(failures)); the files have every row, and with O(set_stats=true) the workflow gets
        RV(tokens). A task result is a job event that AWX keeps in its database, and a fork of ansible-playbook
        decodes, copies and registers it. Playbook C(tokenops.rotation.rotate) returns them at C(-v) and above.
    type: bool
    default: true
notes:
  - Rows are sorted by urgency. First what fails the job, then a person's tasks, then tokens the
    run changed, then tokens another run held, then the rest. Within each group the token that
    expires first comes first.
  - Prometheus metrics are C(tokenops_rotation_token_expiry_timestamp_seconds),
    C(tokenops_rotation_token_last_rotation_timestamp_seconds), C(tokenops_rotation_token_needs_person),
    C(tokenops_rotation_token_failed) and C(tokenops_rotation_token_changed), labelled with
    C(product), C(endpoint) and C(token). The run is described by
    C(tokenops_rotation_run_timestamp_seconds), C(tokenops_rotation_run_success),
    C(tokenops_rotation_last_success_timestamp_seconds) (kept from the previous file when a run
    fails), C(tokenops_rotation_run_tokens) (by C(action)) and C(tokenops_rotation_run_needs_person).
  - Alert rules, their promtool tests and a Grafana dashboard for these metrics are in the
    collection's C(extensions/prometheus) folder.
seealso:
  - name: node_exporter textfile collector
    description: Where to put the Prometheus file so that node_exporter serves it.
    link: https://github.com/prometheus/node_exporter#textfile-collector
  - name: Prometheus Pushgateway
    description: The Pushgateway and its HTTP API (grouping key, PUT, base64 label values).
    link: https://github.com/prometheus/pushgateway#api
"""

EXAMPLES = r"""
- name: The report across products, after every role ran (what playbook tokenops.rotation.rotate does)
  tokenops.rotation.rotation_report:
    sources: >-
      {{ groups['all'] | map('extract', hostvars) | selectattr('das_rotation_record', 'defined')
         | map(attribute='das_rotation_record') | list }}
    dest: /var/lib/tokenops/reports
    prometheus_path: /var/lib/node_exporter/textfile_collector/tokenops.prom
    consent_wait_limit: 2d
  delegate_to: localhost
  run_once: true
  register: tokenops_report

- name: One report from the reports of the slices of a sliced AWX job (what playbook tokenops.rotation.merge_reports does)
  tokenops.rotation.rotation_report:
    merge: [/var/lib/tokenops/reports/tokenops-rotation.slice-*.json]
    dest: /var/lib/tokenops/reports
  delegate_to: localhost
  run_once: true

- name: Push the metrics to a Pushgateway (credentials from the AWX credential type's environment variables)
  tokenops.rotation.rotation_report:
    sources: "{{ [das_rotation_record] }}"
    formats: [json]
    pushgateway:
      url: https://pushgateway.example.com:9091
      ca_path: /etc/pki/tls/certs/internal-ca.pem
  delegate_to: localhost
  run_once: true

- name: Fail when something needs a person, also for a DPA token inside warn_before
  tokenops.rotation.rotation_report:
    sources: "{{ [dpa_rotation_record] }}"
    formats: []
    fail_on: [failed, needs_reconcile, dpa_fail_before, dpa_warn_before]
    fail: true
"""

RETURN = r"""
outcome:
  description: V(failed) (an item fails the job), V(attention) (a person has something to do) or V(ok).
  returned: always
  type: str
  sample: attention
generated_at:
  description: When the report was made (UTC, ISO 8601).
  returned: always
  type: str
check_mode:
  description: Whether the run it reports was in check mode (its actions are predictions).
  returned: always
  type: bool
prediction:
  description: Whether the report is a prediction (the report of a check run); its files are C(<name>-check.*).
  returned: always
  type: bool
rows:
  description: One row per token, most urgent first.
  returned: unless O(return_rows=false)
  type: list
  elements: dict
  contains:
    product:
      description: C(das), C(dpa), C(secretserver) or C(openpayments).
      type: str
    endpoint:
      description: The inventory host (a DAS tenant, a DPA server, a Secret Server, an authorization server).
      type: str
    token:
      description: The token's id in the inventory.
      type: str
    action:
      description: What the run did (or would do in check mode), as the module returned it.
      type: str
    expires_at:
      description: When the stored secret expires (UTC, ISO 8601), or null.
      type: str
    time_left:
      description: The time left in words (C(29d 23h), C(expired 3h ago), C(never)).
      type: str
    seconds_left:
      description: Seconds until it expires; negative when expired; null when unknown or never.
      type: int
    conditions:
      description: The conditions the row is in (see O(fail_on)).
      type: list
      elements: str
    todo:
      description: What a person must do.
      type: list
      elements: str
    fails_job:
      description: Whether one of its conditions is in O(fail_on).
      type: bool
needs_person:
  description: The rows and audit findings that need a person, each with its conditions and what to do.
  returned: always
  type: list
  elements: dict
failures:
  description: The items of RV(needs_person) whose conditions are in O(fail_on).
  returned: always
  type: list
  elements: dict
failure_lines:
  description: One line per item of RV(failures) with what to do, after a heading line; empty when nothing fails.
  returned: always
  type: list
  elements: str
summary:
  description: A line about the run, one line per inventory host with its tokens by action, one line per store or
    product endpoint that made it wait (RV(backpressure)), then one line per item that needs a person.
  returned: always
  type: list
  elements: str
audit:
  description: The DAS tenant audit's findings, each token once per tenant.
  returned: always
  type: list
  elements: dict
errors:
  description: Stages that failed without failing a token (the read before the run, the audit) and roles that failed.
  returned: always
  type: list
  elements: dict
backpressure:
  description:
    - Per store or product endpoint, what slowness cost the run, added up over the hosts' tasks.
    - C(endpoint), C(waited_s), C(retries), C(lowest_concurrency) (the fewest requests in flight any task fell to),
      C(throttled) (429 answers), C(timeouts), C(slow_answers), C(requests), C(resolved_by_read_back).
  returned: always
  type: list
  elements: dict
counts:
  description: Tokens, changed, by action, needing a person, failing the job, audit findings and endpoints.
  returned: always
  type: dict
files:
  description: The files written (or, in check mode, that would be), by format.
  returned: always
  type: dict
  sample: {json: /var/lib/tokenops/reports/tokenops-rotation.json}
stats:
  description: A summary for C(ansible.builtin.set_stats), for the next step of a workflow.
  returned: always
  type: dict
scope:
  description:
    - What the report covers, kept so that reports of job slices merge into what one run would report
      (O(merge)). C(endpoints) lists each C(product) and C(endpoint); C(das_audit) lists per DAS tenant C(url)
      the C(endpoints) that audited it and the token ids they C(managed).
  returned: unless O(return_rows=false)
  type: dict
stats_key:
  description:
    - The key to give RV(stats) under in C(ansible.builtin.set_stats) C(data), C(tokenops_rotation_report), or
      C(tokenops_rotation_report_slice_<slice>) for a job slice (AWX merges the artifacts of all slices into one
      dictionary for the next workflow node, where a shared key would keep only the last slice's).
  returned: always
  type: str
  sample: tokenops_rotation_report_slice_4711
slice:
  description: The job slice of the report (O(slice)); empty when not sliced and in a merged report.
  returned: always
  type: str
slices:
  description: With O(merge), the reports merged (C(slice), C(report) file, C(generated_at), C(outcome), C(tokens)); else empty.
  returned: always
  type: list
  elements: dict
pushgateway:
  description:
    - What became of the push. C(enabled) (a URL was set), C(pushed), C(grouping_key) (C(job) and
      C(slice)), C(url), C(path), and C(warning) when the metrics did not reach the Pushgateway.
  returned: always
  type: dict
  sample: {enabled: true, pushed: true, grouping_key: {job: tokenops_rotation, slice: all},
           url: "https://pushgateway.example.com:9091", path: /metrics/job/tokenops_rotation/slice/all}
tokens:
  description:
    - Every token's result as its module returned it (never a secret), by product and inventory
      host, for C(ansible.builtin.set_stats) (playbook C(tokenops.rotation.rotate) hands it on as
      C(tokenops_rotation_tokens), with O(set_stats=true)).
  returned: unless O(return_rows=false)
  type: dict
  sample: {das: {tenant-a: [{id: ci-deployer, action: rotated, changed: true}]}}
ansible_stats:
  description:
    - With O(set_stats=true), what Ansible keeps as the run's custom stats, as C(ansible.builtin.set_stats) returns it.
    - C(data) holds RV(stats) under RV(stats_key) and RV(tokens) under the matching C(tokenops_rotation_tokens) key;
      C(per_host=false), C(aggregate=true).
  returned: when O(set_stats=true)
  type: dict
  sample: {data: {tokenops_rotation_report: {outcome: ok}, tokenops_rotation_tokens: {das: {tenant-a: []}}},
           per_host: false, aggregate: true}
"""

import glob
import json
import os
import re
import tempfile

from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.tokenops.rotation.plugins.module_utils import pushgateway
from ansible_collections.tokenops.rotation.plugins.module_utils.module import CheckedModule
from ansible_collections.tokenops.rotation.plugins.module_utils.report import (
    CONDITIONS,
    DEFAULT_FAIL_ON,
    LAST_SUCCESS,
    RENDERERS,
    SLICE_PATTERN,
    build,
    failure_lines,
    merge,
    stats,
    stats_key,
    summary_lines,
    to_prometheus,
)

# What return_rows=false leaves out of the task result: it grows with the tokens (the files have it all).
PER_TOKEN = ("rows", "tokens", "scope")
_LAST_SUCCESS_LINE = re.compile(r"^%s(?:\{[^}]*\})?[ \t]+([0-9.eE+-]+)[ \t]*$" % LAST_SUCCESS, re.MULTILINE)


def previous_last_success(path):
    """The last success the textfile at `path` holds (Unix time), so that a failed run keeps it; None if none."""
    try:
        with open(path, "rb") as handle:
            found = _LAST_SUCCESS_LINE.search(handle.read(1 << 24).decode("utf-8", "replace"))
        return int(float(found.group(1))) if found else None
    except (IOError, OSError, ValueError, OverflowError):
        return None


def write_atomically(path, text, mode=0o644):
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_reports(module, patterns):
    """[(path, document)] of the JSON reports the paths and glob patterns name, each once, in a stable order."""
    paths = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else ([pattern] if os.path.exists(pattern) else [])
        if not found:
            module.fail_json(msg="merge: no report matches %s" % pattern)
        paths.extend(path for path in found if path not in paths)
    reports = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                reports.append((path, json.loads(handle.read().decode("utf-8"))))
        except (IOError, OSError, ValueError) as exc:
            module.fail_json(msg="merge: cannot read the JSON report %s: %s" % (path, exc))
    return reports


def unspooled(sources):
    """The sources with each stage the module spooled (report_spool) read back from its file.

    The roles of playbook tokenops.rotation.rotate record a small dictionary per stage; the per-token
    results are in the file the module wrote, so no task templates a structure as large as the fleet.
    A DAS rotation that audited its tenant in the same pass carries the audit: it becomes the
    source's audit stage.
    """
    found = []
    for source in sources:
        if not isinstance(source, dict):
            continue
        source = dict(source)
        for name in ("rotate", "cleanup"):
            stage = source.get(name)
            if not isinstance(stage, dict) or not stage.get("report_spool"):
                continue
            try:
                with open(stage["report_spool"]) as handle:
                    loaded = json.load(handle)
            except (IOError, OSError, ValueError) as exc:
                source[name] = dict(stage, failed=True, results=None,
                                    msg="the %s results of this host could not be read from %s: %s" % (name, stage["report_spool"], exc))
                continue
            merged = dict(stage)
            merged.update(loaded if isinstance(loaded, dict) else {})
            source[name] = merged
        rotate = source.get("rotate")
        if isinstance(rotate, dict) and not source.get("audit"):
            if rotate.get("audit_error"):
                source["audit"] = {"failed": True, "msg": rotate["audit_error"]}
            elif isinstance(rotate.get("audit"), list):
                source["audit"] = {"audit": rotate["audit"]}
        found.append(source)
    return found


def remove_spool(folder, sources):
    """Remove the report_spool files of the sources that are in folder, then folder. Returns what is left (the other
    files, or why the folder could not be read or removed): the caller warns, the report stands."""
    folder = os.path.realpath(folder)
    for source in sources:
        for name in ("rotate", "cleanup"):
            stage = source.get(name) if isinstance(source, dict) else None
            path = stage.get("report_spool") if isinstance(stage, dict) else None
            if path and os.path.dirname(os.path.realpath(path)) == folder:
                try:
                    os.unlink(path)
                except OSError:
                    pass    # gone already, or it stays and is listed below
    try:
        left = sorted(os.listdir(folder))
        if not left:
            os.rmdir(folder)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [str(exc)]
    return left


def token_results(sources):
    """The per-token results by product and inventory host, as the modules returned them (for set_stats)."""
    found = {}
    for source in sources:
        results = []
        for name in ("rotate", "cleanup"):
            stage = source.get(name)
            items = stage.get("results") if isinstance(stage, dict) else None
            results.extend(item for item in items or [] if isinstance(item, dict))
        found.setdefault(str(source.get("product")), {})[str(source.get("endpoint"))] = results
    return found


def endpoint_lines(report):
    """One line per inventory host: its tokens by action (what the job's output says in place of every row)."""
    hosts = {}
    for row in report["rows"]:
        counts = hosts.setdefault((row["product_name"], row["endpoint"]), {})
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    return ["%s %s: %d token(s), %s" % (name, endpoint, sum(counts.values()), ", ".join("%d %s" % (n, a) for a, n in sorted(counts.items())))
            for (name, endpoint), counts in sorted(hosts.items())]


def main():
    module = CheckedModule(
        argument_spec=dict(
            sources=dict(type="list", elements="dict"),
            merge=dict(type="list", elements="path"),
            slice=dict(type="str", default=""),
            dest=dict(type="path", default="~/.ansible/tokenops/reports"),
            name=dict(type="str", default="tokenops-rotation"),
            formats=dict(type="list", elements="str", choices=sorted(RENDERERS), default=["json", "markdown", "html", "prometheus"]),
            prometheus_path=dict(type="path"),
            fail_on=dict(type="list", elements="str", default=list(DEFAULT_FAIL_ON)),
            consent_wait_limit=dict(type="str", default="1d"),
            fail=dict(type="bool", default=False),
            pushgateway=dict(type="dict", options=pushgateway.SPEC),
            set_stats=dict(type="bool", default=False),
            spool_dir=dict(type="path"),
            return_rows=dict(type="bool", default=True),
        ),
        required_one_of=[("sources", "merge")],
        mutually_exclusive=[("sources", "merge")],
        supports_check_mode=True,
    )
    p = module.params
    unknown = sorted(set(p["fail_on"]) - set(CONDITIONS))
    if unknown:
        module.fail_json(msg="fail_on: unknown condition(s) %s; choose from %s" % (", ".join(unknown), ", ".join(sorted(CONDITIONS))))
    if not p["name"] or "/" in p["name"]:
        module.fail_json(msg="name is a file name without a folder, such as tokenops-rotation")
    if p["prometheus_path"] and not p["prometheus_path"].endswith(".prom"):
        module.fail_json(msg="prometheus_path must end in .prom: the node_exporter textfile collector reads only those files")
    if p["merge"] is not None and p["slice"]:
        module.fail_json(msg="slice is for the report of one job slice; a merged report (merge) is the whole run's")
    if p["slice"] and not SLICE_PATTERN.match(p["slice"]):
        module.fail_json(msg="slice must be letters, digits, _, . and -, at most 63 characters (such as the AWX job id), not %r" % p["slice"])
    sources = unspooled(p["sources"]) if p["sources"] is not None else []
    try:
        merge_warnings = []
        if p["merge"] is not None:
            report, merge_warnings = merge(read_reports(module, p["merge"]), fail_on=p["fail_on"], consent_wait_limit=p["consent_wait_limit"])
        else:
            report = build(sources, fail_on=p["fail_on"], consent_wait_limit=p["consent_wait_limit"], slice_name=p["slice"])
        bad_input = None
    except ValueError as exc:
        report, bad_input = None, str(exc)
    if bad_input is not None:
        module.fail_json(msg=bad_input)   # outside the except block: the input's fault, no traceback
    for warning in merge_warnings:
        module.warn(warning)
    report["warnings"] = list(merge_warnings)
    if module.check_mode or report["prediction"]:
        # A prediction's metrics would stand for a run that did not happen.
        pushed = {"enabled": bool((p["pushgateway"] or {}).get("url")), "pushed": False, "check_mode": True}
    else:
        pushed = pushgateway.push(report, p["pushgateway"], p["slice"])
    if pushed.get("warning"):
        report["warnings"].append(pushed["warning"])
        module.warn(pushed["warning"])

    files = {}
    # A check run's report is a prediction: beside the last real report, never over it, and no metrics.
    name = p["name"] + "-check" if report["prediction"] else p["name"]
    suffix = ".slice-%s" % p["slice"] if p["slice"] else ""
    for fmt in p["formats"]:
        if fmt == "prometheus" and report["prediction"]:
            continue
        extension = RENDERERS[fmt][0]
        if fmt == "prometheus" and p["prometheus_path"]:
            files[fmt] = p["prometheus_path"][:-len(".prom")] + suffix + ".prom"
        else:
            files[fmt] = os.path.join(p["dest"], name + suffix + extension)
    if not module.check_mode:
        for fmt, path in files.items():
            try:
                folder = os.path.dirname(path)
                if folder and not os.path.isdir(folder):
                    os.makedirs(folder, 0o755)
                if fmt == "prometheus":
                    text = to_prometheus(report, last_success=previous_last_success(path))
                else:
                    text = RENDERERS[fmt][1](report)
                write_atomically(path, text)
            except (IOError, OSError) as exc:
                module.fail_json(msg="cannot write the %s report to %s: %s" % (fmt, path, exc), files=files)

    summary = summary_lines(report)
    summary[1:1] = endpoint_lines(report)
    tokens = token_results(sources)
    out = dict(changed=bool(files), files=files, stats=stats(report, files), stats_key=stats_key(report["slice"]), summary=summary,
               tokens=tokens, failure_lines=failure_lines(report), pushgateway=pushed, **report)
    out.pop("warnings")     # Ansible's own key: the task's warnings went out through module.warn
    if p["set_stats"]:
        # What a task result says under ansible_stats, Ansible keeps as the run's custom stats (set_stats returns
        # the same); no set_stats task templates thousands of rows again.
        out["ansible_stats"] = {"data": {out["stats_key"]: out["stats"], stats_key(report["slice"], "tokenops_rotation_tokens"): tokens},
                                "per_host": False, "aggregate": True}
    if not p["return_rows"]:
        for name in PER_TOKEN:
            out.pop(name, None)
    if p["spool_dir"] and not module.check_mode:
        left = remove_spool(p["spool_dir"], p["sources"] or [])
        if left:
            module.warn("the job's spool folder %s is left as it is: %s" % (p["spool_dir"], ", ".join(left[:5])))
    if p["fail"] and report["failures"]:
        out.pop("failed", None)
        module.fail_json(msg="\n".join(out["failure_lines"]), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
