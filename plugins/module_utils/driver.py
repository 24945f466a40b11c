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
    result_for,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

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
    """

    def __init__(self, action, reason=None, intent=None, usable=True, data=None, predicted=UNCHANGED, run=None,
                 fields=None, changed=None):
        self.action = action
        self.reason = reason
        self.intent = intent
        self.usable = usable
        self.data = data or {}
        self.predicted = predicted
        self.run = run
        self.fields = fields or {}
        self.changed = changed


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
            return self._failed(token, "%s: store (%s): %s" % (self.steps.product_name, self.mod.store.describe(), exc))
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
            return self._predicted(token, plan)
        self._record_intent(token, plan)
        outcome = dict(plan.run(token) or {}) if plan.run else {}
        flow.finish()
        return self._result(token, plan, outcome)

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

    def diff(self, result, before, after, header):
        before_text, after_text = self.diff_text(before), self.diff_text(after)
        if before_text != after_text:
            result["_diff"] = dict(before=before_text, after=after_text, before_header=header, after_header=header)
        return result

    def diff_text(self, record):
        text = diff_text(record)
        if not record:
            return text
        lines = ["%s: %s" % (key, record[key]) for key in self.steps.diff_keys if record.get(key) is not None]
        return text + "".join(line + "\n" for line in lines)

    def _predicted(self, token, plan):
        after = token.flow.before if plan.predicted is UNCHANGED else plan.predicted
        result = result_for(token.id, plan.action, token.flow, record=after, changed=plan.changed, msg=plan.reason,
                            **plan.fields)
        result["store_version"] = token.flow.version
        result.pop("secret", None)
        if token.recovering:
            result["recovered_step"] = (token.flow.before.get("pending") or {}).get("step")
        result = self.steps.decorate(token, result, after)
        return self.diff(result, token.flow.before, after, token.flow.path)

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
        result = self.steps.decorate(token, result, record)
        return self.diff(result, flow.before, record, flow.path)

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

    def close(self):
        self.heartbeat.stop()
