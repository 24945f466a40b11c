# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report across products of one rotation run: rows, what needs a person, and the renderings.

The roles record, per inventory host and product, what each stage of the run returned (a "source",
see `rows_of`). This module turns those into one row per token, decides what a person must do and
whether that fails the job, sorts the rows by urgency, and renders them as JSON, Markdown, a
self-contained HTML page and Prometheus text format. It copies only the fields it names from the
results, so nothing else a result may carry reaches a report.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re

from ansible_collections.tokenops.rotation.plugins.module_utils import catalog, report_html
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import iso, parse_duration, parse_time

PRODUCTS = {"das": "Styra DAS", "dpa": "SolarWinds DPA", "secretserver": "Delinea Secret Server", "openpayments": "Open Payments"}
PRODUCT_ORDER = ("das", "dpa", "secretserver", "openpayments")

# Every condition a row can be in: (what it is, how severe). "error" conditions are what fails the
# job by default; "todo" ones are a person's task that can wait; "info" needs nobody.
CONDITIONS = {
    "failed": ("the token's rotation or check failed", "error"),
    "needs_reconcile": ("an interrupted rotation only a person can settle", "error"),
    "dpa_fail_before": ("a DPA refresh token inside fail_before, or expired", "error"),
    "consent_overdue": ("an Open Payments grant waiting for consent longer than consent_wait_limit", "error"),
    "needs_interaction": ("a token that needs a person to log in (a one-time code)", "error"),
    "backed_off_stale": ("another run held the token and its lease had run out", "error"),
    "consent_waiting": ("an Open Payments grant waiting for consent", "todo"),
    "dpa_warn_before": ("a DPA refresh token inside warn_before", "todo"),
    "manual_step": ("a step in the product's own interface", "todo"),
    "das_unmanaged": ("a DAS token no inventory host manages", "todo"),
    "das_all_paths": ("a DAS token that allows every API path", "todo"),
    "das_never_expires": ("a DAS token that practically never expires", "todo"),
    "backed_off": ("another run was changing the token", "info"),
}
DEFAULT_FAIL_ON = ("needs_reconcile", "failed", "dpa_fail_before", "consent_overdue", "needs_interaction", "backed_off_stale")
AUDIT_CONDITIONS = {"unmanaged": "das_unmanaged", "allows_all_paths": "das_all_paths", "never_expires": "das_never_expires"}

DPA_PAGE = "Options > Users & Contacts > Refresh Token Management"
# The result fields a row copies (with these names); nothing else of a result reaches a report.
_STRINGS = ("token_id", "fingerprint", "expires_at", "rotated_at", "issued_at", "store_path", "holder", "lease_expires_at",
            "redirect", "grant_requested_at", "expiry_status", "manual_step", "method", "backed_off_at", "holder_state",
            "holder_checked_at", "verified_at", "finish_uri")


def _text(value, limit=2000):
    """A value as a bounded one-line-or-more string; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)
    return value if len(value) <= limit else value[:limit] + "..."


def _stage(source, name):
    stage = source.get(name)
    return stage if isinstance(stage, dict) else {}


def _results_of(stage):
    """The per-token results of a module task: its `results`, or the task itself for a single token."""
    items = stage.get("results")
    if isinstance(items, list):
        return [item for item in items if isinstance(item, dict)]
    if stage.get("id") is not None and stage.get("action") is not None:
        return [stage]
    return []


def _stage_failure(stage):
    """The message of a module task that failed as a whole (bad input, an unreachable store, a crash)."""
    if stage.get("failed") and not _results_of(stage):
        return _text(stage.get("msg")) or "the task failed without a message"
    return None


# ------------------------------------------------------------------ rows

class Row(dict):
    """One token of one endpoint: what happened, when it expires, and what a person must do."""

    def add(self, condition, todo=None):
        if condition not in self["conditions"]:
            self["conditions"].append(condition)
        if todo and todo not in self["todo"]:
            self["todo"].append(todo)


def _new_row(source, token, stage_name, result, check_mode):
    product = source.get("product") or "unknown"
    row = Row(product=product, product_name=PRODUCTS.get(product, product), endpoint=_text(source.get("endpoint")) or "",
              token=_text(token) or "", stage=stage_name, action=None, changed=False, check_mode=check_mode,
              conditions=[], todo=[], msg=None)
    for key in _STRINGS:
        row[key] = _text(result.get(key)) if result.get(key) is not None else None
    row["days_left"] = result.get("days_left") if isinstance(result.get("days_left"), int) else None
    row["changed"] = bool(result.get("changed"))
    row["backed_off"] = bool(result.get("backed_off"))
    row["msg"] = _text(result.get("msg"))
    steps = result.get("reconcile_steps")
    row["reconcile_steps"] = [_text(s) for s in steps if s] if isinstance(steps, list) else []
    action = result.get("action")
    row["action"] = action if isinstance(action, str) else ("failed" if result.get("failed") else "none")
    row["failed"] = bool(result.get("failed")) or row["action"] == "failed"
    if product == "dpa" and result.get("never_expires"):
        row["never_expires"] = True
    return row


def rows_of(source, now, consent_wait_limit):
    """The rows of one source: what one inventory host's role recorded for one product.

    A source is {product, endpoint, url, check_mode, configured: [ids], removing: [ids],
    read / rotate / cleanup / audit: what those tasks returned (as registered), error: a failure of
    the role itself}. Every configured token gets a row, with or without a result.
    """
    check_mode = bool(source.get("check_mode"))
    rows = []
    seen = set()
    rotate, cleanup = _stage(source, "rotate"), _stage(source, "cleanup")
    read = _stage(source, "read")
    earlier = _earlier_requests(read)
    stored = _stored_before(read)
    for stage_name, stage in (("rotate", rotate), ("cleanup", cleanup)):
        for result in _results_of(stage):
            token = result.get("id")
            seen.add((stage_name, token))
            row = _new_row(source, token, stage_name, result, check_mode)
            if row["failed"] and stage_name == "rotate":
                _fill_from_store(row, stored.get(token))
            rows.append(_judged(row, now, consent_wait_limit, earlier))
    refresher = rotate.get("refresher")
    if isinstance(refresher, dict) and refresher.get("id"):
        rows.append(_judged(_new_row(source, refresher["id"], "rotate", refresher, check_mode), now, consent_wait_limit, earlier))
        seen.add(("rotate", refresher["id"]))
    error = _text(source.get("error"))
    configured, unreadable = _configured(source)
    if unreadable and not rows:
        row = _new_row(source, "", "rotate", {"action": "failed", "failed": True}, check_mode)
        row["msg"] = _stage_failure(rotate) or unreadable
        row.add("failed", "Fix the tokens file of %s and run the job again: %s" % (row["endpoint"], row["msg"]))
        rows.append(row)
    for stage_name, stage, wanted in (("rotate", rotate, configured), ("cleanup", cleanup, source.get("removing"))):
        for token in wanted if isinstance(wanted, list) else []:
            if (stage_name, token) in seen:
                continue
            row = _missing(source, token, stage_name, stage, error, check_mode, now)
            if stage_name == "rotate":
                _fill_from_store(row, stored.get(token))
            rows.append(row)
    if error and not rows:
        row = _new_row(source, "", "role", {"action": "failed", "failed": True}, check_mode)
        row["msg"] = error
        row.add("failed", "Fix what stopped the %s role on %s: %s" % (row["product"], row["endpoint"], error))
        rows.append(row)
    return rows


def _configured(source):
    """The ids the host keeps: listed in the source, or read from the role's tokens file (catalog.py), which the
    module read too; (ids, why the file could not be read)."""
    path = source.get("configured_file")
    if not path:
        return source.get("configured"), None
    try:
        return catalog.token_ids(catalog.read_token_list(path, "tokens_file")), None
    except ValueError as exc:
        return [], str(exc)


def _missing(source, token, stage_name, stage, error, check_mode, now):
    """A configured token without a result: the task backed off as a whole, failed as a whole, or never ran."""
    if stage.get("backed_off"):
        # A task that backed off as a whole (a DAS refresher held by another run): what it saw is on the refresher.
        seen = stage.get("refresher") if isinstance(stage.get("refresher"), dict) else stage
        held = {"action": "none", "backed_off": True, "msg": stage.get("msg")}
        held.update((key, seen.get(key)) for key in ("holder", "lease_expires_at", "backed_off_at", "holder_state", "holder_checked_at"))
        row = _new_row(source, token, stage_name, held, check_mode)
        return _judged(row, now, None, {})
    why = _stage_failure(stage) or error or ("the %s task was skipped" % stage_name if stage.get("skipped") else
                                             "the role did not reach this token")
    row = _new_row(source, token, stage_name, {"action": "failed", "failed": True, "msg": why}, check_mode)
    row.add("failed", "Fix the cause and run the job again: %s" % why)
    return row


def _stored_before(read_stage):
    """What the run's read of the store said about each token (its *_info module's items), by id."""
    items = read_stage.get("tokens") if isinstance(read_stage.get("tokens"), list) else read_stage.get("grants")
    return {item["id"]: item for item in items or [] if isinstance(item, dict) and item.get("id") is not None}


def _fill_from_store(row, before):
    """A token whose run failed still shows when it expires, as the store knew it before the run."""
    if not before:
        return
    for key in ("expires_at", "fingerprint", "store_path", "token_id", "expiry_status"):
        if row.get(key) is None and before.get(key) is not None:
            row[key] = _text(before[key])
    if row.get("days_left") is None and isinstance(before.get("days_left"), int):
        row["days_left"] = before["days_left"]
    if before.get("never_expires"):
        row["never_expires"] = True


def _earlier_requests(read_stage):
    """When each pending Open Payments grant was requested, from the run's read of the store."""
    found = {}
    for grant in read_stage.get("grants") or []:
        if isinstance(grant, dict) and grant.get("id") and grant.get("grant_requested_at"):
            found[grant["id"]] = grant["grant_requested_at"]
    return found


def _when(value):
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def _judged(row, now, consent_wait_limit, earlier):
    """Decide the row's conditions and what a person must do."""
    product, action = row["product"], row["action"]
    if row["backed_off"]:
        lease = _when(row.get("lease_expires_at"))
        if _holder_stopped(row, lease):
            row.add("backed_off_stale", "Another run (%s) held this token and its lease ran out at %s, so it died mid-rotation: "
                    "run the job again, which takes the token over and recovers it" % (row.get("holder") or "another run", iso(lease)))
        else:
            row.add("backed_off")
        return row
    if action == "needs_reconcile":
        steps = row["reconcile_steps"] or [row["msg"] or "see the task output of this token"]
        row.add("needs_reconcile")
        for step in steps:
            row.add("needs_reconcile", step)
    elif product == "dpa" and row.get("expiry_status") in ("fail", "expired") and action != "failed":
        row.add("dpa_fail_before", _dpa_replace(row))
    elif row["failed"] and action != "needs_interaction":   # a module may fail a token that waits for a person: that is the condition
        row.add("failed", row["msg"] or "the token failed without a message; see the task output")
    if action == "needs_interaction":
        if product == "openpayments":
            _consent(row, now, consent_wait_limit, earlier)
        else:
            row.add("needs_interaction", row["msg"] or "a person must log in for this token")
    if product == "dpa" and row.get("expiry_status") == "warn":
        row.add("dpa_warn_before", _dpa_replace(row))
    if row.get("manual_step"):
        row.add("manual_step", row["manual_step"])
    if not row["check_mode"] and not row["failed"] and action not in ("revoked", "removed", "needs_interaction", "needs_reconcile") \
            and not row.get("fingerprint"):
        row.add("failed", "No stored secret after the run: run the job again; if it stays, see this token's task output")
    return row


def _holder_stopped(row, lease):
    """Whether the run that held a backed-off token stopped mid-rotation, judged by what this run saw, never by when the
    report is written (a holder that finished normally after its lease would otherwise page a person).

    The module re-reads the entry after its other tokens (`holder_state`); without that, only a lease that had already
    run out when this run backed off counts."""
    state = row.get("holder_state")
    if state:
        return state == "stopped"
    seen = _when(row.get("backed_off_at"))
    return lease is not None and seen is not None and lease <= seen


def _dpa_replace(row):
    when = row.get("expires_at") or "its expiry"
    return ("Create a new refresh token in DPA's web interface (%s), put it in this token's refresh_token and run the job "
            "with dpa_state: rotated before %s, when '%s' stops working" % (DPA_PAGE, when, row.get("token_id") or row["token"]))


def _consent(row, now, limit, earlier):
    requested = _when(row.get("grant_requested_at")) or _when(earlier.get(row["token"]))
    if requested is not None:
        row["grant_requested_at"] = iso(requested)
    where = row.get("redirect") or "the redirect URL of the grant (see the task output)"
    todo = "Have the resource owner approve the grant at %s, then run the job again" % where
    if row.get("finish_uri"):
        # Such a grant is continued only with the interact_ref of its finish redirect: a plain run keeps waiting.
        todo = ("Have the resource owner approve the grant at %s. The authorization server then sends their browser to "
                "%s?hash=...&interact_ref=...: run the job again with that interact_ref as the extra variable "
                "openpayments_interact_refs: {%s: <interact_ref>}" % (where, row["finish_uri"], row["token"]))
    waited = (now - requested).total_seconds() if requested is not None else 0.0
    row["consent_waiting_seconds"] = int(waited)
    if limit is not None and waited > limit:
        row.add("consent_overdue", "%s (waiting since %s, longer than consent_wait_limit)" % (todo, iso(requested)))
    else:
        row.add("consent_waiting", todo)


# ------------------------------------------------------------------ the DAS tenant audit

def audit_of(sources, managed_anywhere=None):
    """Audit findings per DAS tenant: each token once, unmanaged only when no host of that tenant manages it."""
    tenants = {}
    for source in sources:
        if source.get("product") != "das":
            continue
        stage = _stage(source, "audit")
        items = stage.get("audit")
        if not isinstance(items, list):
            continue
        tenant = tenants.setdefault(source.get("url") or source.get("endpoint"), {"endpoints": [], "tokens": {}})
        tenant["endpoints"].append(source.get("endpoint"))
        for item in items:
            if not isinstance(item, dict) or not item.get("id"):
                continue
            known = tenant["tokens"].setdefault(item["id"], dict(item, managed=False))
            known["managed"] = known["managed"] or bool(item.get("managed"))
    findings = []
    for url in sorted(tenants, key=str):
        tenant = tenants[url]
        for token_id in sorted(tenant["tokens"]):
            item = tenant["tokens"][token_id]
            found = []
            if not item["managed"]:
                found.append("unmanaged")
            if item.get("allows_all_paths"):
                found.append("allows_all_paths")
            if item.get("never_expires"):
                found.append("never_expires")
            if not found:
                continue
            findings.append({
                "product": "das", "endpoint": ", ".join(sorted(str(e) for e in tenant["endpoints"])), "url": _text(url),
                "token": _text(token_id), "description": _text(item.get("description")), "expires_at": _text(item.get("expires_at")),
                "managed": item["managed"], "findings": found, "conditions": [AUDIT_CONDITIONS[f] for f in found],
                "todo": [_audit_todo(f, token_id, item) for f in found],
            })
    return findings


def _audit_todo(finding, token_id, item):
    if finding == "unmanaged":
        return "No inventory host manages '%s': add it to a host's das_tokens, or revoke it in DAS if nothing uses it" % token_id
    if finding == "allows_all_paths":
        return "'%s' may call every DAS API path: give it allow_path_patterns that list only what it needs" % token_id
    when = "only at " + item["expires_at"] if item.get("expires_at") else "never"
    return "'%s' expires %s: give it a ttl and let the job rotate it" % (token_id, when)


def stage_errors(sources):
    """Stages that failed without failing a token (reading the state before the run, the audit), and role failures."""
    errors = []
    for source in sources:
        for name in ("read", "audit"):
            stage = _stage(source, name)
            if stage.get("failed"):
                errors.append({"product": source.get("product"), "endpoint": source.get("endpoint"), "stage": name,
                               "msg": _text(stage.get("msg")) or "the %s stage failed" % name})
        if source.get("error"):
            errors.append({"product": source.get("product"), "endpoint": source.get("endpoint"), "stage": "role",
                           "msg": _text(source["error"])})
    return errors


# ------------------------------------------------------------------ the whole report

def seconds_left(row, now):
    expires = _when(row.get("expires_at"))
    return int((expires - now).total_seconds()) if expires is not None else None


def time_left(seconds, never=False):
    """'29d 23h', '5h 12m', '42m', 'expired 3h ago', 'never', or '' when unknown."""
    if seconds is None:
        return "never" if never else ""
    past = seconds < 0
    left = abs(seconds)
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        text = "%dd %dh" % (days, hours)
    elif hours:
        text = "%dh %dm" % (hours, minutes)
    elif minutes:
        text = "%dm" % minutes
    else:
        text = "%ds" % left
    return "expired %s ago" % text if past else text


def _rank(row):
    """0: fails the job, 1: a person's task, 2: changed, 3: left to another run, 4: nothing to do."""
    if row["fails_job"]:
        return 0
    if row["needs_person"]:
        return 1
    if row["changed"]:
        return 2
    if row["backed_off"]:
        return 3
    return 4


def _order(row):
    left = row["seconds_left"]
    product = PRODUCT_ORDER.index(row["product"]) if row["product"] in PRODUCT_ORDER else len(PRODUCT_ORDER)
    return (_rank(row), left is None, left if left is not None else 0, product, row["endpoint"], row["token"])


def _check_fail_on(fail_on):
    unknown = sorted(set(fail_on) - set(CONDITIONS))
    if unknown:
        raise ValueError("fail_on: unknown condition(s) %s; choose from %s" % (", ".join(unknown), ", ".join(sorted(CONDITIONS))))


def _consent_limit(consent_wait_limit):
    return parse_duration(consent_wait_limit, "consent_wait_limit") if consent_wait_limit not in (None, "") else None


def scope_of(sources):
    """What a report covers, kept in it so that reports of job slices merge into what one run would report:
    every endpoint, and per DAS tenant the endpoints that audited it and the token ids they manage."""
    endpoints = sorted({(str(s.get("product") or "unknown"), str(s.get("endpoint") or "")) for s in sources})
    tenants = {}
    for source in sources:
        items = _stage(source, "audit").get("audit")
        if source.get("product") != "das" or not isinstance(items, list):
            continue
        tenant = tenants.setdefault(_text(source.get("url") or source.get("endpoint")), {"endpoints": set(), "managed": set()})
        tenant["endpoints"].add(str(source.get("endpoint")))
        tenant["managed"].update(str(i["id"]) for i in items if isinstance(i, dict) and i.get("id") and i.get("managed"))
    return {"endpoints": [{"product": p, "endpoint": e} for p, e in endpoints],
            "das_audit": [{"url": url, "endpoints": sorted(t["endpoints"]), "managed": sorted(t["managed"])}
                          for url, t in sorted(tenants.items(), key=lambda kv: str(kv[0]))]}


def build(sources, now=None, fail_on=DEFAULT_FAIL_ON, consent_wait_limit="1d", slice_name=""):
    """The report document: rows by urgency, what needs a person, what fails the job, the audit, counts."""
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    _check_fail_on(fail_on)
    limit = _consent_limit(consent_wait_limit)
    sources = [s for s in sources if isinstance(s, dict)]
    rows = []
    for source in sources:
        rows.extend(rows_of(source, now, limit))
    for row in rows:
        if row["action"] in ("created", "rotated", "recovered") and not (row.get("rotated_at") or row.get("issued_at")) \
                and not row["check_mode"]:
            row["issued_at"] = iso(now)   # minted by this run, whose result gave no time
    return _assemble(rows, audit_of(sources), stage_errors(sources), scope_of(sources), any(s.get("check_mode") for s in sources),
                     now, fail_on, consent_wait_limit, slice_name=slice_name or "", slices=[], backpressure=backpressure_of(sources))


def _assemble(rows, audit, errors, scope, check_mode, now, fail_on, consent_wait_limit, slice_name, slices, backpressure):
    """Judge every row against fail_on at `now`, sort by urgency, count: the one shape of every report."""
    for row in rows:
        row["seconds_left"] = seconds_left(row, now)
        row["time_left"] = time_left(row["seconds_left"], never=bool(row.get("never_expires")))
        row["fails_job"] = any(c in fail_on for c in row["conditions"])
        asks_a_person = any(CONDITIONS[c][1] != "info" for c in row["conditions"] if c in CONDITIONS)
        row["needs_person"] = row["fails_job"] or (bool(row["todo"]) and asks_a_person)
    rows.sort(key=_order)
    for item in audit:
        item["fails_job"] = any(c in fail_on for c in item["conditions"])
        item["needs_person"] = True
    failures = [_item(r) for r in rows if r["fails_job"]] + [_item(a) for a in audit if a["fails_job"]]
    needs_person = [_item(r) for r in rows if r["needs_person"]] + [_item(a) for a in audit]
    by_action = {}
    for row in rows:
        by_action[row["action"]] = by_action.get(row["action"], 0) + 1
    outcome = "failed" if failures else ("attention" if needs_person else "ok")
    return {
        "generated_at": iso(now),
        "check_mode": bool(check_mode),
        "prediction": bool(check_mode),   # a check run's report says what a real run would do
        "outcome": outcome,
        "fail_on": list(fail_on),
        "consent_wait_limit": consent_wait_limit,
        "slice": slice_name,
        "slices": slices,
        "counts": {"tokens": len(rows), "changed": sum(1 for r in rows if r["changed"]), "by_action": by_action,
                   "needs_person": len(needs_person), "fails_job": len(failures), "audit_findings": len(audit),
                   "endpoints": len(scope["endpoints"])},
        "rows": rows,
        "needs_person": needs_person,
        "failures": failures,
        "audit": audit,
        "errors": errors,
        "scope": scope,
        "backpressure": backpressure,
    }


# ------------------------------------------------------------------ merging the reports of job slices

_REPORT_KEYS = ("generated_at", "rows", "audit", "errors")
_CONSENT = ("consent_waiting", "consent_overdue")


def merge(reports, now=None, fail_on=DEFAULT_FAIL_ON, consent_wait_limit="1d"):
    """One report from the JSON reports of a run's job slices, as one run over all their hosts would have made it.

    reports: [(name, document)]. Rows are taken as the slices judged them and judged again at `now` against this
    fail_on and consent_wait_limit. A token in two reports (the same host in two slices, or reports of two runs)
    keeps the row of the newest report and is named in the returned warnings. Returns (report, warnings).
    """
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    _check_fail_on(fail_on)
    limit = _consent_limit(consent_wait_limit)
    for name, document in reports:
        missing = [k for k in _REPORT_KEYS if not isinstance(document, dict) or k not in document]
        if missing:
            raise ValueError("%s is not a JSON report of tokenops.rotation.rotation_report (no %s)" % (name, ", ".join(missing)))
    ordered = sorted(reports, key=lambda nd: (_when(nd[1]["generated_at"]) or now, nd[0]))
    rows, came_from, warnings = {}, {}, []
    for name, document in ordered:
        for old in document["rows"]:
            key = (old.get("product"), old.get("endpoint"), old.get("token"), old.get("stage"))
            if key in rows:
                warnings.append("%s %s %s is in two reports (%s, %s): kept the row of the newer, %s" % (
                    key[0], key[1], key[2] or "(the endpoint)", came_from[key], name, name))
            row = Row(old)
            row["conditions"], row["todo"] = list(old.get("conditions") or []), list(old.get("todo") or [])
            if any(c in row["conditions"] for c in _CONSENT):
                # Judged again at the merge's time and limit: a grant may have waited longer by now.
                row["conditions"] = [c for c in row["conditions"] if c not in _CONSENT]
                row["todo"] = [t for t in row["todo"] if not t.startswith("Have the resource owner approve")]
                _consent(row, now, limit, {})
            rows[key], came_from[key] = row, name
    scope = _merged_scope(document for _name, document in ordered)
    audit = _merged_audit([document for _name, document in ordered], scope)
    errors = [error for _name, document in ordered for error in document["errors"]]
    slices = [{"slice": document.get("slice") or "", "report": name, "generated_at": document["generated_at"],
               "outcome": document.get("outcome"), "tokens": len(document["rows"])} for name, document in ordered]
    # The slices' figures, added up per endpoint as one run's tasks are.
    waits = backpressure_of([{"rotate": {"backpressure": {item.get("endpoint"): item for item in document.get("backpressure") or []}}}
                             for _name, document in ordered])
    report = _assemble(list(rows.values()), audit, errors, scope, any(d.get("check_mode") for _n, d in ordered), now,
                       fail_on, consent_wait_limit, slice_name="", slices=slices, backpressure=waits)
    return report, warnings


def _merged_scope(documents):
    endpoints, tenants = set(), {}
    for document in documents:
        scope = document.get("scope") or {}
        listed = scope.get("endpoints")
        if listed is None:      # a report without a scope: its rows name its endpoints
            listed = [{"product": r.get("product"), "endpoint": r.get("endpoint")} for r in document["rows"]]
        endpoints.update((str(e.get("product")), str(e.get("endpoint"))) for e in listed)
        for tenant in scope.get("das_audit") or []:
            known = tenants.setdefault(tenant["url"], {"endpoints": set(), "managed": set()})
            known["endpoints"].update(tenant.get("endpoints") or [])
            known["managed"].update(tenant.get("managed") or [])
    return {"endpoints": [{"product": p, "endpoint": e} for p, e in sorted(endpoints)],
            "das_audit": [{"url": url, "endpoints": sorted(t["endpoints"]), "managed": sorted(t["managed"])}
                          for url, t in sorted(tenants.items(), key=lambda kv: str(kv[0]))]}


def _merged_audit(documents, scope):
    """The audit of each DAS tenant over every slice: a token another slice's host manages is not unmanaged."""
    tenants = {t["url"]: t for t in scope["das_audit"]}
    items = {}
    for document in documents:
        for finding in document["audit"]:
            key = (finding.get("url"), finding.get("token"))
            known = items.setdefault(key, dict(finding, findings=[]))
            known["managed"] = bool(known.get("managed")) or bool(finding.get("managed"))
            known["findings"] = sorted(set(known["findings"]) | set(finding.get("findings") or []))
    merged = []
    for (url, token_id), item in sorted(items.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        tenant = tenants.get(url)
        managed = item["managed"] or bool(tenant and token_id in tenant["managed"])
        found = [f for f in ("unmanaged", "allows_all_paths", "never_expires") if f in item["findings"] and not (f == "unmanaged" and managed)]
        if not found:
            continue
        merged.append(dict(item, endpoint=", ".join(tenant["endpoints"]) if tenant else item.get("endpoint"), managed=managed,
                           findings=found, conditions=[AUDIT_CONDITIONS[f] for f in found],
                           todo=[_audit_todo(f, token_id, item) for f in found]))
    return merged


_WAIT_SUMS = ("waited_s", "retries", "throttled", "timeouts", "slow_answers", "requests", "resolved_by_read_back")


def backpressure_of(sources):
    """Per store or product endpoint, what slowness cost the run: the modules' `backpressure` figures added up
    (the lowest concurrency is the lowest any task fell to)."""
    found = {}
    for source in sources:
        for name in ("read", "rotate", "cleanup"):
            figures = _stage(source, name).get("backpressure")
            for endpoint, item in (figures.items() if isinstance(figures, dict) else ()):
                if not isinstance(item, dict):
                    continue
                total = found.setdefault(endpoint, dict({"endpoint": _text(endpoint)}, lowest_concurrency=None, **dict.fromkeys(_WAIT_SUMS, 0)))
                for key in _WAIT_SUMS:
                    if isinstance(item.get(key), (int, float)):
                        total[key] += item[key]
                lowest = item.get("lowest_concurrency")
                if isinstance(lowest, int) and (total["lowest_concurrency"] is None or lowest < total["lowest_concurrency"]):
                    total["lowest_concurrency"] = lowest
    for total in found.values():
        total["waited_s"] = round(total["waited_s"], 1)
    return [found[key] for key in sorted(found)]


def backpressure_lines(report):
    """One line per endpoint that made the run wait or retry."""
    return ["Slowed down by %s: waited %.1f s, %d retries, concurrency down to %s (%d answers 429, %d time-outs, %d slow; "
            "%d lost store answers settled by reading back)" % (
                item["endpoint"], item["waited_s"], item["retries"], item["lowest_concurrency"], item["throttled"], item["timeouts"],
                item["slow_answers"], item["resolved_by_read_back"])
            for item in report.get("backpressure") or [] if item["waited_s"] or item["retries"]]


def _item(row):
    """A row as an item of the lists of what needs a person."""
    return {"product": row["product"], "endpoint": row["endpoint"], "token": row["token"], "action": row.get("action", "audit"),
            "conditions": list(row["conditions"]), "todo": list(row["todo"]), "expires_at": row.get("expires_at"),
            "fails_job": row["fails_job"]}


def item_line(item):
    """One line for a person: where, what, and what to do."""
    name = PRODUCTS.get(item["product"], item["product"])
    what = ", ".join(item["conditions"])
    todo = " ".join(_sentence(t) for t in item["todo"]) or "see the report"
    return "%s %s %s (%s): %s" % (name, item["endpoint"], item["token"] or "(the whole endpoint)", what, todo)


def _sentence(text):
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def summary_lines(report):
    counts = report["counts"]
    head = "Token rotation %s: %d token(s) on %d endpoint(s), %d changed, %d need a person, %d fail the job%s" % (
        report["outcome"], counts["tokens"], counts["endpoints"], counts["changed"], counts["needs_person"], counts["fails_job"],
        " (check mode: predicted)" if report["check_mode"] else "")
    return ([head + slice_note(report)] + backpressure_lines(report) + [item_line(i) for i in report["needs_person"]]
            + ["Warning: %s" % w for w in report.get("warnings") or []])


def slice_note(report):
    """' (job slice 7)', ' (3 job slices merged: 7, 8, 9)' or ''."""
    if report.get("slice"):
        return " (job slice %s)" % report["slice"]
    if report.get("slices"):
        return " (%d job slices merged: %s)" % (len(report["slices"]), ", ".join(s["slice"] or s["report"] for s in report["slices"]))
    return ""


def failure_lines(report):
    if not report["failures"]:
        return []
    return ["%d item(s) need a person; the job fails so that somebody acts:" % len(report["failures"])] + \
        [item_line(i) for i in report["failures"]]


def stats(report, files):
    """What a workflow's next step receives (set_stats): no rows of unchanged tokens, never a secret."""
    return {
        "outcome": report["outcome"], "generated_at": report["generated_at"], "check_mode": report["check_mode"],
        "counts": report["counts"], "failures": report["failures"], "needs_person": report["needs_person"],
        "changed": [{"product": r["product"], "endpoint": r["endpoint"], "token": r["token"], "action": r["action"],
                     "store_path": r.get("store_path")} for r in report["rows"] if r["changed"]],
        "backpressure": report.get("backpressure") or [],
        "files": files, "slice": report.get("slice") or "", "slices": report.get("slices") or [],
    }


SLICE_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")


def stats_key(slice_name, name="tokenops_rotation_report"):
    """The set_stats key of a report (or, with name tokenops_rotation_tokens, of its per-token results). AWX hands the
    next workflow node the artifacts of all slices merged into one dictionary (a later slice's key replaces an earlier
    one's), so each slice's key carries its slice."""
    return name + ("_slice_" + re.sub(r"[^A-Za-z0-9_]", "_", slice_name) if slice_name else "")


# ------------------------------------------------------------------ renderings

def to_json(report):
    """The report's keys one per line, and each item of a list (a row, an audit finding) on a line of its own.

    grep finds a token's whole row, and json's C encoder writes each line: the indented encoding is pure Python,
    a second of the report task's CPU at 10,000 rows.
    """
    lines = []
    for key in sorted(report):
        value = report[key]
        if isinstance(value, list) and value:
            text = "[\n%s\n  ]" % ",\n".join("    " + json.dumps(item, sort_keys=True) for item in value)
        else:
            text = json.dumps(value, sort_keys=True)
        lines.append("  %s: %s" % (json.dumps(key), text))
    return "{\n%s\n}\n" % ",\n".join(lines)


_MARK = {0: "FAIL", 1: "TODO", 2: "changed", 3: "held", 4: "ok"}


def _md(text):
    text = "" if text is None else str(text)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>").replace("<br><br>", "<br>")


def to_markdown(report):
    counts = report["counts"]
    lines = ["# Token rotation report" + (": prediction (check mode, nothing was changed)" if report["check_mode"] else ""), "",
             "Run at %s: **%s**%s. %d token(s) on %d endpoint(s), %d changed, %d need a person, %d fail the job." % (
                 report["generated_at"], report["outcome"], " (check mode: what a real run would do)" if report["check_mode"] else "",
                 counts["tokens"], counts["endpoints"], counts["changed"], counts["needs_person"], counts["fails_job"]) + slice_note(report), ""]
    if report["needs_person"]:
        lines += ["## What needs a person", ""]
        for item in report["needs_person"]:
            lines.append("- %s**%s** %s `%s`: %s" % ("(fails the job) " if item["fails_job"] else "",
                                                     _md(PRODUCTS.get(item["product"], item["product"])), _md(item["endpoint"]),
                                                     _md(item["token"] or "-"), _md(", ".join(item["conditions"]))))
            for todo in item["todo"]:
                lines.append("  - %s" % _md(todo))
        lines.append("")
    lines += ["## Tokens, most urgent first", "",
              "| | Product | Endpoint | Token | Action | Expires at | Time left | What a person must do |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            _MARK[_rank(row)], _md(row["product_name"]), _md(row["endpoint"]), _md(row["token"]), _md(_action_text(row)),
            _md(row.get("expires_at") or ""), _md(row["time_left"]), _md("<br>".join(row["todo"]) or _note(row))))
    if report["audit"]:
        lines += ["", "## DAS tenant audit", "", "| Tenant | Token | Findings | Expires at | What to do |", "|---|---|---|---|---|"]
        for item in report["audit"]:
            lines.append("| %s | %s | %s | %s | %s |" % (_md(item["endpoint"]), _md(item["token"]), _md(", ".join(item["findings"])),
                                                         _md(item.get("expires_at") or "never"), _md("<br>".join(item["todo"]))))
    if report["errors"]:
        lines += ["", "## Stages that failed", ""]
        for error in report["errors"]:
            lines.append("- %s %s (%s): %s" % (_md(error["product"]), _md(error["endpoint"]), _md(error["stage"]), _md(error["msg"])))
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + ["- %s" % _md(w) for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def _action_text(row):
    if row["backed_off"]:
        return "backed off"
    return row["action"] + (" (predicted)" if row["check_mode"] else "")


def _note(row):
    if row["backed_off"]:
        return "another run (%s) was changing it" % (row.get("holder") or "unknown")
    return ""


def to_html(report):
    """A self-contained page for people (report_html): summary, expiry picture, grouped findings, a filterable table."""
    return report_html.render(report, products=PRODUCTS, product_order=PRODUCT_ORDER, conditions=CONDITIONS, rank=_rank)


# ------------------------------------------------------------------ Prometheus text format

def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels):
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (k, _label(v)) for k, v in sorted(labels.items()))


def _epoch(value):
    moment = _when(value)
    return None if moment is None else int((moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).total_seconds())


LAST_SUCCESS = "tokenops_rotation_last_success_timestamp_seconds"


def last_success_of(report, earlier=None):
    """When the job last succeeded (Unix time): this run when nothing in it fails the job, else `earlier`.

    A failed run does not erase the last success, which the sink (the previous textfile, the
    Pushgateway's group) remembers; a check-mode run predicts and succeeds at nothing.
    """
    if not report["failures"] and not report["check_mode"]:
        return _epoch(report["generated_at"])
    return earlier


def to_prometheus(report, last_success=None):
    """node_exporter textfile collector format: each token's expiry and last rotation, and the run's outcome.

    `last_success`: when the job last succeeded before this run (Unix time), kept when this run fails.
    """
    out = []

    def metric(name, kind, text, samples):
        out.append("# HELP %s %s" % (name, text))
        out.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            out.append("%s%s %s" % (name, _labels(**labels), value))

    # A slice's series carry its slice: textfiles of several slices side by side in one collector folder never clash.
    run = {"slice": report["slice"]} if report.get("slice") else {}
    tokens = [(dict(run, product=r["product"], endpoint=r["endpoint"], token=r["token"]), r) for r in report["rows"] if r["token"]]
    # Each row's times once (parsing them is most of this function's work at thousands of rows).
    expiry = [(labels, _epoch(r.get("expires_at"))) for labels, r in tokens]
    rotation = [(labels, _epoch(r.get("rotated_at") or r.get("issued_at"))) for labels, r in tokens]
    metric("tokenops_rotation_token_expiry_timestamp_seconds", "gauge",
           "When the token's stored secret expires (Unix time); absent when it never expires or is unknown.",
           [(labels, moment) for labels, moment in expiry if moment is not None])
    metric("tokenops_rotation_token_last_rotation_timestamp_seconds", "gauge",
           "When the token's stored secret was last rotated, or first issued (Unix time).",
           [(labels, moment) for labels, moment in rotation if moment is not None])
    metric("tokenops_rotation_token_needs_person", "gauge",
           "1 when the token is in a condition that fails the job (see the report's todo), else 0.",
           [(labels, 1 if r["fails_job"] else 0) for labels, r in tokens])
    metric("tokenops_rotation_token_failed", "gauge",
           "1 when the token's rotation or check failed in the last run (condition failed), else 0; token \"\" is a role that failed.",
           [(dict(run, product=r["product"], endpoint=r["endpoint"], token=r["token"]), 1 if "failed" in r["conditions"] else 0)
            for r in report["rows"]])
    metric("tokenops_rotation_token_changed", "gauge", "1 when the last run changed the token (created, rotated, ...), else 0.",
           [(dict(labels, action=r["action"]), 1 if r["changed"] else 0) for labels, r in tokens])
    metric("tokenops_rotation_run_timestamp_seconds", "gauge", "When the last rotation run wrote this report (Unix time).",
           [(run, _epoch(report["generated_at"]))])
    metric("tokenops_rotation_run_success", "gauge", "1 when nothing in the last run fails the job, else 0.",
           [(run, 0 if report["failures"] else 1)])
    success = last_success_of(report, last_success)
    metric(LAST_SUCCESS, "gauge", "When a run last ended with nothing that fails the job (Unix time); absent until one has.",
           [(run, success)] if success is not None else [])
    metric("tokenops_rotation_run_tokens", "gauge", "Tokens of the last run by action.",
           [(dict(run, action=action), count) for action, count in sorted(report["counts"]["by_action"].items())])
    metric("tokenops_rotation_run_needs_person", "gauge", "Items of the last run that need a person, and those that fail the job.",
           [(dict(run, fails_job="false"), report["counts"]["needs_person"] - report["counts"]["fails_job"]),
            (dict(run, fails_job="true"), report["counts"]["fails_job"])])
    return "\n".join(out) + "\n"


RENDERERS = {"json": (".json", to_json), "markdown": (".md", to_markdown), "html": (".html", to_html), "prometheus": (".prom", to_prometheus)}
