# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one driver of a token's life, for every product.

Per token the driver reads the store entry, registers its secrets with the redactor, backs off
from a live intent, asks the product's steps for a plan (absent, recovery of a stale intent, or
present), and then either reports the plan (check mode) or records the plan's intent with
check-and-set and runs it. It builds every result, check-mode prediction and fingerprint diff.

A product supplies only its steps (a `Steps` subclass): it inspects the product, decides, and
does the work of a plan. It never loads the entry, never writes the first intent and never maps
an error to a result. The rule that makes a rotation safe is enforced here, not in the products:
the HTTP layer asks the driver's `ChangeGuard` before every request that changes a product, and
the guard refuses it unless this run's intent is the one recorded on the token's entry.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import threading
import traceback

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    Flow,
    FlowError,
    IntentMissing,
    diff_text,
    iso,
    parse_time,
    public_view,
    result_for,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError, error_text

# Plan.predicted when the record stays as it is.
UNCHANGED = object()


class Plan:
    """What a run will do to one token, decided before anything is changed.

    action     what a real run reports when it goes as planned (and what check mode predicts)
    reason     why (the due policy's reason, "state rotated", ...), shown as the result's msg
    intent     the step recorded in the entry's intent before `run` is called; None when the run
               changes nothing in the product (it may still write the store, with check-and-set)
    usable     whether the stored `secret` keeps working while the intent is recorded (the token
               lookup hands it out only then)
    data       step data recorded with the intent (ids, reasons; never a secret unless it must
               survive a crash, as an overlap's new secret does)
    predicted  the record after a real run, for check mode and the diff (fingerprints of secrets
               not yet minted are placeholders); UNCHANGED when nothing changes
    run        run(token) -> dict of result fields; may override "action", "msg" and "changed"
    fields     result fields in both modes
    changes    (before, after): what the run changes in the product besides the stored record (a token's
               fields, its role bindings), as {name: value} without secrets, for the diff
    """

    def __init__(self, action, reason=None, intent=None, usable=True, data=None, predicted=UNCHANGED, run=None,
                 fields=None, changed=None, changes=None):
        self.action = action
        self.reason = reason
        self.intent = intent
        self.usable = usable
        self.data = data or {}
        self.predicted = predicted
        self.run = run
        self.fields = fields or {}
        self.changed = changed
        self.changes = changes


class Token:
    """One token's run: its spec, its flow and whatever the product's steps note on the way."""

    def __init__(self, spec, flow, check_mode):
        self.spec = spec
        self.flow = flow
        self.check = check_mode
        self.recovering = False
        self.notes = {}

    @property
    def id(self):
        return self.spec["id"]

    @property
    def record(self):
        return self.flow.record or {}

    @property
    def pending(self):
        return self.flow.pending


class Steps:
    """A product's steps. Subclasses set the class attributes and implement present, recover, absent."""

    product = None          # "das": the store path segment and the record's `product`
    product_name = None     # "Styra DAS": the prefix of messages
    secret_keys = ()        # record keys besides `secret` whose values are secrets
    diff_keys = ()          # record keys (not secret) that the diff shows besides the shared view

    def __init__(self, mod):
        self.mod = mod
        self.params = mod.params
        self.check = mod.module.check_mode

    def path(self, spec):
        return self.mod.store_path(spec["id"], spec.get("store_path"))

    def secrets(self, record):
        """Every secret value a record holds (masked as soon as the entry is read)."""
        found = [record.get("secret"), (record.get("previous") or {}).get("secret"), (record.get("pending") or {}).get("new_secret")]
        found.extend(record.get(key) for key in self.secret_keys)
        return [value for value in found if isinstance(value, str) and value]

    def present(self, token):
        raise NotImplementedError

    def recover(self, token):
        """A plan for a stale intent (token.pending); the driver adopts the intent before run."""
        raise NotImplementedError

    def absent(self, token):
        raise NotImplementedError

    def decorate(self, token, result, record):
        """Add the product's fields to a result (both modes); return it."""
        return result

    def decorate_failure(self, token, result, record):
        """Add the product's fields to a failed or backed-off result; `record` is the entry as this run last saw it
        (None when it could not be read). Must not raise; return the result."""
        return result

    # -- shared helpers for steps

    def unknown_step(self, token):
        pending = token.pending or {}
        raise FlowError("%s: the store entry %s has an intent at an unknown step %r (rotation %s); a person must look at it"
                        % (self.product_name, token.flow.path, pending.get("step"), pending.get("rotation_id")),
                        step="recover", action="needs_reconcile",
                        reconcile_steps=["Read the entry %s (its `pending` says what was interrupted) and check the token in %s"
                                         % (token.flow.path, self.product_name),
                                         "Then run this task with state: rotated to replace the token"])


class ChangeGuard:
    """Asked by the HTTP layer before every request that changes a product.

    Each worker thread runs one token at a time; the guard knows that token's flow and lets a
    change through only while the flow holds its recorded intent. Outside a token's run (an info
    module, a bug) every change is refused.
    """

    def __init__(self):
        self._local = threading.local()

    def activate(self, flow):
        self._local.flow = flow

    def deactivate(self):
        self._local.flow = None

    def before_change(self, what):
        flow = getattr(self._local, "flow", None)
        if flow is None:
            raise IntentMissing("%s was about to be sent outside a token's rotation; this is a bug in tokenops.rotation, "
                                "nothing was sent" % what)
        flow.authorize_change(what)

    def refused(self):
        flow = getattr(self._local, "flow", None)
        if flow is not None:
            flow.change_refused()


class Heartbeat:
    """Renews the lease of every intent this run holds, every third of the lease, until it is done."""

    def __init__(self, interval):
        self.interval = max(float(interval), 0.05)
        self._flows = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._stopped = False

    def hold(self, flow):
        with self._lock:
            self._flows.add(flow)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._beat, name="tokenops-lease", daemon=True)
                self._thread.start()

    def drop(self, flow):
        with self._lock:
            self._flows.discard(flow)

    def _beat(self):
        while not self._wake.wait(self.interval):
            with self._lock:
                flows = list(self._flows)
            for flow in flows:
                flow.renew()

    def stop(self):
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)


class Driver:
    """The per-token life. `run(spec)` never raises; it returns the token's result."""

    def __init__(self, mod, steps):
        self.mod = mod
        self.steps = steps
        self.check = mod.module.check_mode
        self.guard = mod.guard
        self.heartbeat = Heartbeat(mod.lease / 3.0)

    def flow(self, spec):
        return Flow(self.mod.store, self.steps.path(spec), self.steps.product, check_mode=self.check,
                    lock_timeout=self.mod.lock_timeout, lease=self.mod.lease)

    # -- the life of one token

    def run(self, spec):
        flow = None
        token = None
        try:
            flow = self.flow(spec)
            token = Token(spec, flow, self.check)
            self.guard.activate(flow)
            return self._run(token)
        except BackOff as exc:
            return self._backed_off(token, exc)
        except FlowError as exc:
            self._settle(token, keep=exc.step == "persist")
            return self._failed(token, exc, action=exc.action, step=exc.step, steps=exc.reconcile_steps, details=exc.details)
        except ApiError as exc:
            self._settle(token)
            return self._failed(token, exc, error=exc.to_dict())
        except StoreError as exc:
            self._settle(token)
            return self._failed(token, "%s: %s" % (self.steps.product_name, error_text(self.mod.store, exc)))
        except ValueError as exc:
            self._settle(token)
            return self._failed(token, exc)
        except Exception as exc:  # a bug: reported without a secret, the traceback kept for -vvv
            self._settle(token)
            return self._failed(token, "%s: unexpected error: %s: %s" % (self.steps.product_name, exc.__class__.__name__, exc),
                                exception=self.mod.redactor.scrub(traceback.format_exc()))
        finally:
            self.guard.deactivate()
            if flow is not None:
                self.heartbeat.drop(flow)

    def _run(self, token):
        flow = token.flow
        record = flow.load() or {}
        for value in self.steps.secrets(record):
            self.mod.secret(value)
        if flow.pending and flow.pending_is_live():
            pending = flow.pending
            raise BackOff("%s is being changed by %s since %s (rotation %s, step %s, lease until %s); this run left it alone"
                          % (flow.path, pending.get("holder"), pending.get("started_at"), pending.get("rotation_id"),
                             pending.get("step"), pending.get("lease_expires_at") or "unknown"), pending=pending)
        if self.mod.params.get("state") == "absent":
            plan = self.steps.absent(token)
        elif flow.pending:
            token.recovering = True
            plan = self.steps.recover(token)
        else:
            plan = self.steps.present(token)
        if self.check:
            predicted = self._predicted(token, plan)
            return self._due_after_recovery_predicted(token, plan, predicted) if token.recovering else predicted
        self._record_intent(token, plan)
        outcome = dict(plan.run(token) or {}) if plan.run else {}
        flow.finish()
        result = self._result(token, plan, outcome)
        if token.recovering:
            result = self._due_after_recovery(token, result)
        return result

    def _follows_recovery(self, token, recovered, record):
        """Whether the due policy is applied after this recovery: state present, a policy, a secret that was settled."""
        return getattr(self.mod, "policy", None) is not None and self.mod.params.get("state") == "present" \
            and recovered.get("action") == "recovered" and not recovered.get("failed") and isinstance(record, dict) \
            and bool(record.get("secret")) and not record.get("pending")

    @staticmethod
    def _then(result, step, settled=None):
        """One shape for every product: a run that settles an interrupted rotation and then makes a change of its own
        reports that change as its action, with recovered_step, and a message that says both, in that order."""
        result["recovered_step"] = step
        settled = settled or "the interrupted step '%s' was settled" % step
        result["msg"] = "recovered: %s; then %s%s" % (settled, result["action"], ": " + result["msg"] if result.get("msg") else "")
        return result

    def _then_rotated(self, recovered, result):
        return self._then(result, recovered.get("recovered_step"), recovered.get("msg"))

    @staticmethod
    def _own_change(action):
        """A change of the run's own after a recovery (not the recovery itself, and not a failure's action)."""
        return action not in ("recovered", "none", "needs_reconcile", "backed_off")

    def _due_after_recovery_predicted(self, token, plan, predicted):
        """Check mode: the due policy applied to the record the recovery would leave, as a real run does."""
        after = copy.deepcopy(token.flow.before if plan.predicted is UNCHANGED else plan.predicted)
        if isinstance(after, dict):
            after.pop("pending", None)   # a recovery that completes clears the intent
        if not self._follows_recovery(token, predicted, after):
            return predicted
        flow = token.flow
        saved = flow.record
        flow.record = after
        token.recovering = False
        try:
            follow = self.steps.present(token)
            if follow.action != "rotated":
                return predicted
            return self._then_rotated(predicted, self._predicted(token, follow))
        finally:
            flow.record = saved

    def _due_after_recovery(self, token, recovered):
        """Apply the due policy to what a recovery left in the same run: the secret an interrupted run minted may already
        be due, and the next run would otherwise rotate a token this one reported as settled."""
        flow = token.flow
        if not self._follows_recovery(token, recovered, flow.record):
            return recovered
        token.recovering = False
        # What the follow-up changes is counted on its own: a failure that changed nothing withdraws only its intent.
        flow.changes_sent = flow.changes_refused = 0
        plan = self.steps.present(token)
        if plan.action != "rotated":
            return recovered   # only the due policy's rotation follows; the rest waits for the next run as before
        self._record_intent(token, plan)
        outcome = dict(plan.run(token) or {}) if plan.run else {}
        flow.finish()
        return self._then_rotated(recovered, self._result(token, plan, outcome))

    def _record_intent(self, token, plan):
        flow = token.flow
        if plan.intent:
            if token.recovering:
                flow.adopt_pending(step=plan.intent, secret_usable=bool(plan.usable), **plan.data)
            else:
                flow.begin(plan.intent, secret_usable=plan.usable, **plan.data)
            self.heartbeat.hold(flow)
        elif token.recovering and flow.pending:
            # The interrupted step needs nothing done in the product: its intent goes away.
            flow.persist({})

    def _settle(self, token, keep=False):
        """After a failure: withdraw an intent under which nothing changed; keep one under which something may
        have changed (the record of an unfinished change), or whose step could not store what it had (`keep`: a
        new secret found working, such as a DPA adoption's), but end its lease, so the next run recovers it at once."""
        if token is None or self.check:
            return
        flow = token.flow
        try:
            if not flow.holds_intent:
                return
            if not flow.may_have_changed and not token.recovering and not keep:
                flow.abandon()
            else:
                flow.release()
        except (StoreError, FlowError, BackOff):
            pass  # the lease runs out by itself; the next run recovers

    # -- results

    def diff(self, result, before, after, header, changes=None):
        before_text, after_text = self.diff_text(before), self.diff_text(after)
        if changes:
            # What changes in the product itself: an update leaves the stored record as it was.
            before_text += self.changes_text(changes[0])
            after_text += self.changes_text(changes[1])
        if before_text != after_text:
            result["_diff"] = dict(before=before_text, after=after_text, before_header=header, after_header=header)
        return result

    def diff_text(self, record):
        text = diff_text(record)
        if not record:
            return text
        lines = ["%s: %s" % (key, record[key]) for key in self.steps.diff_keys if record.get(key) is not None]
        return text + "".join(line + "\n" for line in lines)

    def changes_text(self, state):
        return "".join("%s.%s: %s\n" % (self.steps.product, key, state[key]) for key in sorted(state or {}))

    def _predicted(self, token, plan):
        after = token.flow.before if plan.predicted is UNCHANGED else plan.predicted
        result = result_for(token.id, plan.action, token.flow, record=after, changed=plan.changed, msg=plan.reason,
                            **plan.fields)
        result["store_version"] = token.flow.version
        result.pop("secret", None)
        if token.recovering:
            step = (token.flow.before.get("pending") or {}).get("step")
            result["recovered_step"] = step
            if self._own_change(result["action"]):
                result = self._then(result, step)
        result = self.steps.decorate(token, result, after)
        return self.diff(result, token.flow.before, after, token.flow.path, plan.changes)

    def _result(self, token, plan, outcome):
        flow = token.flow
        action = outcome.pop("action", plan.action)
        msg = outcome.pop("msg", plan.reason if action != "none" else None)
        changed = outcome.pop("changed", plan.changed)
        fields = dict(plan.fields)
        fields.update(outcome)
        record = flow.record
        if token.recovering:
            fields.setdefault("recovered_step", (flow.before.get("pending") or {}).get("step"))
        secret_ok = self.mod.params.get("return_secret") and bool((record or {}).get("secret"))
        result = result_for(token.id, action, flow, record=record or {}, changed=changed, msg=msg, return_secret=secret_ok, **fields)
        if record is None:
            result["store_version"] = 0
        if token.recovering and self._own_change(action) and not result.get("failed"):
            result = self._then(result, result.get("recovered_step"))
        result = self.steps.decorate(token, result, record)
        return self.diff(result, flow.before, record, flow.path, plan.changes)

    def _backed_off(self, token, exc):
        pending = exc.pending or (token.pending if token else None) or {}
        if exc.store_busy:
            pending = {}   # nobody else holds it: the store was too slow to record this run's intent
        elif not pending and token is not None:
            # Lost a check-and-set race: say who won, from what the store holds now.
            try:
                pending = (self.mod.store.read(token.flow.path).data or {}).get("pending") or {}
            except StoreError:
                pending = {}
        result = result_for(token.id if token else None, "none", token.flow if token else None, changed=False,
                            msg=self.mod.redactor.scrub(str(exc)), backed_off=True)
        if exc.store_busy:
            result["backed_off_reason"] = "store_busy"
        for key in ("holder", "lease_expires_at", "rotation_id", "step", "started_at"):
            if pending.get(key) is not None:
                result[key] = pending[key]
        # When this run saw the holder's lease: the report judges the holder by what the run saw, not by when it is written.
        result["backed_off_at"] = iso(token.flow.now() if token is not None else utcnow())
        if token is not None and token.flow.writes and token.flow.record != token.flow.before:
            result["changed"] = True
        if token is not None:
            result = self.steps.decorate_failure(token, result, token.flow.record)
        return result

    def _failed(self, token, why, action=None, step=None, steps=None, details=None, **extra):
        flow = token.flow if token else None
        result = dict(id=token.id if token else None, failed=True, action=action or "failed",
                      msg=self.mod.redactor.scrub(str(why)), changed=self._changed(flow))
        if step:
            result["step"] = step
        if flow is not None:
            result["store_path"] = flow.path
            result["store_version"] = flow.version
            # What the store held before the run: a failed token's report row still says when it expires,
            # without a second read of every entry.
            before = public_view(flow.before)
            for key in ("token_id", "fingerprint", "expires_at"):
                if before.get(key) is not None:
                    result.setdefault(key, before[key])
        if steps or result["action"] == "needs_reconcile":
            result["reconcile_steps"] = [self.mod.redactor.scrub(s) for s in (steps or [result["msg"]])]
        result.update(extra)
        result.update(details or {})
        if token is not None:
            result = self.steps.decorate_failure(token, result, flow.record)
        return result

    @staticmethod
    def _changed(flow):
        """Whether a failed run still changed something: the product, or the stored record (its intent aside)."""
        if flow is None:
            return False
        if flow.may_have_changed:
            return True

        def settled(record):
            record = copy.deepcopy(record or {})
            record.pop("pending", None)
            return record

        return settled(flow.record) != settled(flow.before)

    def recheck_holders(self, results):
        """Re-read the entries this run backed off from, once its other tokens are done, and say what their holder did
        (`holder_state`): `finished` (its intent is gone), `taken_over` (another run recovers it), `working` (its lease
        still runs) or `stopped` (its intent is still there and its lease ran out: it died mid-rotation). The report pages
        a person only for `stopped`, whenever it is written."""
        for result in results:
            if not result.get("backed_off") or not result.get("store_path") or not result.get("rotation_id"):
                continue
            try:
                pending = (self.mod.store.read(result["store_path"]).data or {}).get("pending") or {}
                lease = parse_time(pending.get("lease_expires_at"))
            except (StoreError, ValueError, TypeError):
                continue   # unknown: the report judges from what the run saw when it backed off
            now = utcnow()
            result["holder_checked_at"] = iso(now)
            if pending.get("rotation_id") != result["rotation_id"]:
                result["holder_state"] = "finished"
            elif pending.get("holder") != result.get("holder"):
                result["holder_state"] = "taken_over"
            else:
                result["holder_state"] = "stopped" if lease is not None and lease <= now else "working"
                if pending.get("lease_expires_at"):
                    result["lease_expires_at"] = pending["lease_expires_at"]
        return results

    def close(self):
        self.heartbeat.stop()
