# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module wrapper every token module uses.

Shared option specs (connection, store, rotation policy), one HTTP client and one store per
run, secrets registered with Ansible's no_log machinery as soon as they are seen, a list of
tokens handled with bounded concurrency, and the mapping of every error to one result shape.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import inspect
import json
import os
import tempfile
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, remove_values

from ansible_collections.tokenops.rotation.plugins.module_utils import backpressure, catalog
from ansible_collections.tokenops.rotation.plugins.module_utils.driver import ChangeGuard, Driver
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import (
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    ApiError,
    HttpClient,
    Redactor,
    SecretMask,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    Flow,
    FlowError,
    Policy,
    diff_text,
    parse_duration,
    public_view,
    result_for,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    STORE_ARG_SPEC,
    StoreConfigError,
    StoreError,
    check_path,
    error_text,
    path_for,
    store_from_params,
)
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore


def connection_spec(url_env):
    """Options of doc fragment tokenops.rotation.connection."""
    return dict(
        url=dict(type="str", required=True, fallback=(validators.env_fallback, [url_env])),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=30),
        retries=dict(type="int", default=3),
    )


# Doc fragment tokenops.rotation.rotation: when a token is due.
POLICY_SPEC = dict(
    rotate_before=dict(type="str", default="20%"),
    max_age=dict(type="str"),
)

# Doc fragment tokenops.rotation.rotation.run: how a changing module runs.
RUN_SPEC = dict(
    lock_timeout=dict(type="str", default="5m"),
    lease=dict(type="str", default="60s"),
    return_secret=dict(type="bool", default=False),
    # I/O-bound work (each token waits on the product and the store): 16 at a time hides the wait
    # on a 2-core controller; benchmarks/RESULTS.md has the measurements of 4, 8, 16 and 32.
    concurrency=dict(type="int", default=16),
    # The result again, as a file the job's report reads (rotate.yml): no fleet-sized templating in the roles.
    report_spool=dict(type="path"),
    # The tokens list in a file the module reads (catalog.py): no fleet-sized inventory, templating or module arguments.
    tokens_file=dict(type="path"),
)

STORE_SPEC = dict(store=STORE_ARG_SPEC)


# ansible-core 2.19 attaches a traceback to every fail_json while the user has tracebacks on (ANSIBLE_DISPLAY_TRACEBACK=error):
# the active exception's, or else the call stack; there exception="" means none. Before 2.19 only an active exception
# at -vvv gave one, so failing outside the except block (TokenModule) is enough there.
def _empty_exception_means_none():
    return "exception" in inspect.signature(AnsibleModule.fail_json).parameters


class InputError(Exception):
    """Bad input found by a product's own checks; reported before any request."""


class CheckedModule(AnsibleModule):
    """AnsibleModule whose failure messages name the option and show long values cut short.

    Ansible's own argument checks echo a bad value whole ("... got: <10,000 characters>"), and
    name no option when an item of a list of dictionaries is not one.
    """

    _checking_arguments = False
    _given = None
    tokens_file = None          # the catalog file the tokens were read from (option tokens_file)
    _tokens_file_error = None

    def __init__(self, argument_spec, **kwargs):
        self._checking_arguments = True
        # The options that cannot go with `tokens` cannot go with a file of them either (see _load_params).
        self._beside_tokens = sorted(set(name for group in kwargs.get("mutually_exclusive") or () if "tokens" in group
                                         for name in group if name != "tokens"))
        error = None
        try:
            super(CheckedModule, self).__init__(argument_spec=argument_spec, **kwargs)
        except (TypeError, ValueError, AttributeError):
            # Ansible's own checks crash on some shapes (a dictionary option given as a number)
            error = validators.shape_error(argument_spec, self._given)
            if error is None:
                raise
        error = error or self._tokens_file_error
        if error is not None:
            self.fail_json(msg=error)   # outside the except block: the input's fault, no traceback
        self._checking_arguments = False

    def _load_params(self):
        super(CheckedModule, self)._load_params()
        # The options as given: Ansible's checks replace a value they cannot convert.
        self._given = copy.deepcopy(self.params)
        if self.params.get("tokens_file") not in (None, "") and "tokens_file" in (self.argument_spec or {}):
            self._load_tokens_file()

    def _load_tokens_file(self):
        """`tokens` read from the catalog file, before Ansible checks the options: every item gets the checks (and
        the no_log of its secret fields) that a `tokens` item gets, and the list never was a module argument."""
        path = self.params["tokens_file"]
        clash = [name for name in ["tokens"] + self._beside_tokens if self.params.get(name) not in (None, [])]
        try:
            if clash:
                raise ValueError("tokens_file and %s are mutually exclusive: list the tokens in the file, or give them "
                                 "here, not both" % " and ".join(clash))
            self.params["tokens"] = catalog.read_token_list(path)
            self.tokens_file = path
            # Ansible's checks name no option for an item that is not a dictionary: shape_error does, from these.
            self._given = dict(self._given, tokens=copy.deepcopy(self.params["tokens"]))
        except ValueError as exc:
            self._tokens_file_error = str(exc)
            # An empty list lets Ansible's own checks pass; the file's problem is reported right after them.
            for name in ["tokens"] + self._beside_tokens:
                self.params.pop(name, None)
            self.params["tokens"] = []

    def fail_json(self, msg, **kwargs):
        if self._checking_arguments:
            msg = validators.shape_error(self.argument_spec, self._given) or msg
            if self.tokens_file and "tokens" in msg and msg != self._tokens_file_error:
                msg = "%s (the tokens were read from tokens_file %s)" % (msg, self.tokens_file)
        msg = validators.cut_long_values(msg, [self._given, getattr(self, "params", None)], getattr(self, "no_log_values", ()))
        if "exception" not in kwargs and _empty_exception_means_none():
            # Only a bug carries a traceback (TokenModule.unexpected passes it); bad input and product errors do not.
            kwargs["exception"] = ""
        return super(CheckedModule, self).fail_json(msg=msg, **kwargs)


def check_shared_options(params, url_hint=None):
    """The connection, run and policy options every module shares (those it has); ValueError names the option.

    Returns the due policy (None without policy options); normalises url, ca_path and timeout.
    """
    params["url"] = validators.url(params.get("url"), "url", what=url_hint or validators.URL_WHAT)
    params["ca_path"] = validators.readable_file(params.get("ca_path"), "ca_path")
    params["timeout"] = validators.timeout(params.get("timeout"), "timeout")
    validators.count(params.get("retries"), "retries", maximum=100)
    if "concurrency" in params:
        validators.count(params["concurrency"], "concurrency", minimum=1, maximum=256)
        # 0 would make every other run's intent look abandoned
        validators.positive_duration(params.get("lock_timeout"), "lock_timeout")
        validators.positive_duration(params.get("lease"), "lease")
    if "rotate_before" in params:
        validators.rotate_before(params.get("rotate_before"), "rotate_before")
        validators.duration(params.get("max_age"), "max_age", required=False)
        return Policy.from_params(params)
    return None


class TokenModule:
    """A product module's run: options in, one client and one store, the flow per token."""

    product = None          # "das"
    product_name = None     # "Styra DAS"
    url_env = None
    url_hint = None         # what `url` must be, for messages: "the DPA server as http(s)://host:port"

    def __init__(self, argument_spec, run_options=True, policy_options=True, **kwargs):
        # policy_options=False: a product that cannot rotate (DPA) has no rotate_before/max_age and no self.policy.
        spec = {}
        spec.update(connection_spec(self.url_env))
        spec.update(STORE_SPEC)
        if policy_options:
            spec.update(POLICY_SPEC)
        if run_options:
            spec.update(RUN_SPEC)
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        self.module = CheckedModule(argument_spec=spec, **kwargs)
        self.params = self.module.params
        # The no_log options' values; the secrets this run sees are added to no_log_values later.
        self._option_no_log = frozenset(self.module.no_log_values)
        if not HAS_REQUESTS:
            self.module.fail_json(msg="the Python library requests is required by tokenops.rotation",
                                  exception=str(REQUESTS_IMPORT_ERROR))
        self.redactor = Redactor()
        self._no_log_lock = threading.Lock()
        self.redactor.on_add = self._mark_no_log
        self.warnings = []
        self.extra_output = {}
        self._warn_lock = threading.Lock()
        # Every request that changes a product asks this guard first (see driver.py).
        self.guard = ChangeGuard()
        self.driver = None
        bad_input = None
        try:
            self.policy = check_shared_options(self.params, self.url_hint)
            self.params.setdefault("concurrency", RUN_SPEC["concurrency"]["default"])
            self.params.setdefault("return_secret", False)
            self.lock_timeout = parse_duration(self.params.get("lock_timeout") or "5m", "lock_timeout")
            self.lease = parse_duration(self.params.get("lease") or "60s", "lease")
            if self.params["concurrency"] < 1:
                raise ValueError("concurrency must be at least 1")
            if self.params["return_secret"] and not self.module.no_log:
                raise InputError("return_secret: true puts the secret in the task result; set no_log: true on the task "
                                 "so that Ansible hides the result, or read the secret with the tokenops.rotation.token lookup")
            if self.params.get("report_spool") and (self.params["return_secret"] or self.params.get("return_access_token")):
                # The spool is a file the job's report reads: a secret must never be written there.
                raise InputError("report_spool writes the results to a file: it cannot be combined with return_secret or "
                                 "return_access_token, which put a secret in the results")
            self.store = store_from_params(self.params["store"])   # checks the settings; reads and sends nothing
            # The store settings that shape entry paths (prefix, host), before anything is read or sent.
            self.store_path("-")
            self.validate()
        except (ValueError, InputError, StoreConfigError) as exc:
            bad_input = str(exc)
        except Exception as exc:  # a bug in a check: reported as one, never as a traceback on the console
            self.unexpected(exc)
        if bad_input is not None:
            self.fail(bad_input)   # outside the except block: the input's fault, no traceback
        self.client = None

    # -- hooks for products

    def validate(self):
        """Product checks of the input; raise InputError or ValueError. No request may be sent here."""

    def token_specs(self):
        """The list of per-token option dicts this run handles."""
        raise NotImplementedError

    def run_token(self, spec):
        """Handle one token; return a result dict (rotation.result_for)."""
        return self.driver.run(spec)

    # -- shared machinery

    def _mark_no_log(self, value):
        # With return_secret the task itself is no_log (checked above), so the secret may travel
        # in the result; otherwise Ansible masks it wherever it would appear.
        if self.params.get("return_secret"):
            return
        with self._no_log_lock:
            self.module.no_log_values.add(value)

    def secret(self, value):
        """Register a secret the run has seen, so neither Ansible nor our messages show it."""
        self.redactor.add(value)
        return value

    def warn(self, text):
        with self._warn_lock:
            self.warnings.append(self.redactor.scrub(text))

    def http(self, **overrides):
        if self.client is None:
            p = self.params
            kwargs = dict(validate_certs=p["validate_certs"], ca_path=p["ca_path"], timeout=p["timeout"],
                          # a worker thread holds one connection at a time: as many kept alive as threads run
                          retries=p["retries"], redactor=self.redactor, pool_size=max(4, p.get("concurrency", 1)),
                          change_guard=self.guard,   # no change leaves without its intent (driver.ChangeGuard)
                          verbosity=getattr(self.module, "_verbosity", 0))   # the library's own error text only at -vvv
            kwargs.update(overrides)
            self.client = HttpClient(self.product_name, p["url"], **kwargs)
        return self.client

    @property
    def host(self):
        parts = urlsplit(self.params["url"])
        return parts.netloc or parts.path

    def check_ids(self, check_id=validators.text):
        """The `ids` of an info module: each one the product takes (check_id(id, name)), with a valid store path."""
        for index, token_id in enumerate(self.params.get("ids") or []):
            name = "ids[%d]" % index
            check_id(token_id, name)
            try:
                self.store_path(token_id)
            except StoreError as exc:
                raise InputError("%s: %s" % (name, exc))

    def store_path(self, token_id, explicit=None):
        if explicit not in (None, ""):   # "" (an unset role variable) means the default path
            return check_path(explicit, "store_path")
        return path_for(self.params["store"], self.product, self.host, token_id)

    def stored(self, path):
        """A store entry as every *_info module shows it: (record, the fields they all report).

        The fields are in_store, fingerprint, store_path, store_version and, while a rotation is in
        progress or was interrupted, pending. Never a secret; each module adds its product's fields.
        """
        entry = self.store.read(path)
        record = entry.data or {}
        view = public_view(record)
        shown = dict(in_store=bool(record.get("secret")), fingerprint=view.get("fingerprint"), store_path=path,
                     store_version=entry.version)
        if view.get("pending"):
            shown["pending"] = view["pending"]
        return record, shown

    def flow(self, path):
        return Flow(self.store, path, self.product, check_mode=self.module.check_mode, lock_timeout=self.lock_timeout,
                    lease=self.lease)

    def use_steps(self, steps):
        """The product's steps, run by the one driver."""
        self.driver = Driver(self, steps)
        return self.driver

    def fail(self, msg, **kwargs):
        self.fail_json(msg=self.redactor.scrub(msg), **kwargs)

    def exit_json(self, **out):
        self._finish(self.module.exit_json, out)

    def fail_json(self, **out):
        self._finish(self.module.fail_json, out)

    def _finish(self, finish, out):
        """Mask this run's secrets in the result in one pass, then let Ansible mask the no_log options.

        AnsibleModule masks every string of a result against every no_log value, a str.replace for
        each pair: with a secret seen per token, a result over 2000 tokens would cost 2000 x 2000
        passes per string. The same masks (its markers, every occurrence) in one pass per string.
        """
        waited = backpressure.report((getattr(self, "params", None) or {}).get("concurrency") or backpressure.CEILING)
        if waited:
            out["backpressure"] = waited   # per store and product endpoint: waits, retries, lowest concurrency
        seen = set(self.module.no_log_values) - self._option_no_log
        if seen:
            mask = SecretMask(seen, marker="********", exact_marker="VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
            out = mask.value(out)
            out.setdefault("invocation", {"module_args": mask.value(self.params)})
            self.module.no_log_values = set(self._option_no_log)
        params = getattr(self, "params", None) or {}
        if self.module.tokens_file:
            # The list came from a file: the result names the file, and never carries the list as the module's arguments.
            args = dict((k, v) for k, v in (out.get("invocation") or {}).get("module_args", params).items() if k != "tokens")
            out["invocation"] = {"module_args": dict(args, tokens="%d token(s) from tokens_file %s"
                                                     % (len(params.get("tokens") or ()), self.module.tokens_file))}
        # Never a result that may hold a secret (the combination is refused as bad input, and this holds even so).
        spool = params.get("report_spool") if not (params.get("return_secret") or params.get("return_access_token")) else None
        if spool:
            out = self._spool(spool, out)
        finish(**out)

    def _spool(self, path, out):
        """Write the (masked) result to the report spool file; the result says where, or why it could not."""
        # The values of no_log options are masked as Ansible masks the result (this run's secrets already are).
        recorded = remove_values(dict((k, v) for k, v in out.items() if k not in ("invocation", "exception", "diff")),
                                 self.module.no_log_values)
        try:
            folder = os.path.dirname(path) or "."
            fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(recorded, handle, default=str)
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except (IOError, OSError) as exc:
            out = dict(out)
            out["report_spool_error"] = "cannot write report_spool %s: %s" % (path, exc)
            return out
        out = dict(out)
        out["report_spool"] = path
        if self.module._verbosity < 1 and isinstance(out.get("results"), list):
            # The file has them all: at default verbosity the task result keeps only the tokens that need a
            # look, so it stays small however many tokens the task had (ansible-playbook keeps every result
            # in memory, in each of its forks).
            results = out["results"]
            out["results_spooled"] = len(results)
            out["results"] = [r for r in results if r.get("failed") or r.get("backed_off")
                              or r.get("action") in ("needs_reconcile", "needs_interaction")]
            out.pop("audit", None)
            # Nor the token list it was given, which Ansible would return as the invocation's module_args.
            if not self.module.tokens_file:
                args = dict((k, v) for k, v in (out.get("invocation") or {}).get("module_args", self.params).items() if k != "tokens")
                out["invocation"] = {"module_args": dict(args, tokens="%d token(s), see report_spool" % len(results))}
        return out

    def unexpected(self, exc):
        """Report a bug: "unexpected error" and the exception, the traceback kept for -vvv; never a secret."""
        self.fail("%s: unexpected error: %s: %s" % (self.product_name, exc.__class__.__name__, validators.cut(str(exc), 300)),
                  exception=self.redactor.scrub(traceback.format_exc()))

    def _guarded(self, spec):
        """run_token with every error mapped to a result; never raises."""
        name = spec.get("id")
        try:
            return self.run_token(spec)
        except BackOff as exc:
            return result_for(name, "none", changed=False, msg=str(exc), backed_off=True)
        except ApiError as exc:
            return dict(id=name, changed=False, failed=True, action="failed", msg=self.redactor.scrub(str(exc)),
                        error=exc.to_dict())
        except FlowError as exc:
            out = dict(id=name, changed=False, failed=True, action=exc.action or "failed",
                       msg=self.redactor.scrub(str(exc)), step=exc.step)
            out.update(exc.details)
            return out
        except StoreError as exc:
            return dict(id=name, changed=False, failed=True, action="failed",
                        msg=self.redactor.scrub("%s: %s" % (self.product_name, error_text(self.store, exc))))
        except (InputError, ValueError) as exc:
            return dict(id=name, changed=False, failed=True, action="failed", msg=self.redactor.scrub(str(exc)))
        except Exception as exc:  # a bug: report it without a secret, keep the traceback for -vvv
            return dict(id=name, changed=False, failed=True, action="failed",
                        msg=self.redactor.scrub("%s: unexpected error: %s: %s" % (self.product_name, exc.__class__.__name__, exc)),
                        exception=self.redactor.scrub(traceback.format_exc()))

    def run(self):
        specs = self.token_specs()
        workers = min(self.params["concurrency"], max(1, len(specs)))
        if workers == 1:
            results = [self._guarded(s) for s in specs]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(self._guarded, specs))
        if self.driver is not None:
            self.driver.recheck_holders(results)
        self.exit(results, single=self.single)

    single = False

    def exit(self, results, single=False):
        diffs = [r.pop("_diff") for r in results if "_diff" in r]
        failed = [r for r in results if r.get("failed")]
        out = dict(changed=any(r.get("changed") for r in results))
        for value in self.extra_output.values():
            if isinstance(value, dict):
                out["changed"] = out["changed"] or bool(value.get("changed"))
        out.update(self.extra_output)
        if single:
            changed = out["changed"]
            out.update(results[0])
            out["changed"] = changed
        else:
            out["results"] = results
        if diffs:
            out["diff"] = diffs if len(diffs) > 1 else diffs[0]
        for warning in self.warnings:
            # scrubbed again: a secret seen after the warning was written is masked too
            self.module.warn(self.redactor.scrub(warning))   # passing warnings= to exit_json is deprecated in ansible-core 2.19
        if failed:
            out.pop("failed", None)
            msg = "; ".join("%s: %s" % (r.get("id"), r.get("msg")) for r in failed) if not single else failed[0].get("msg")
            out.pop("msg", None)
            self.close()
            self.fail_json(msg=self.redactor.scrub(msg), **out)
        self.close()
        self.exit_json(**out)

    def close(self):
        """Stop the lease heartbeat, release the HTTP session and the store (the file store keeps its key cache then)."""
        if self.driver is not None:
            self.driver.close()
        if self.client is not None:
            self.client.close()
            self.client = None
        store = getattr(self, "store", None)
        if store is not None:
            try:
                store.close()
            except Exception:  # a cache that could not be kept costs the next run time, never a result
                pass


def run_module(module_class):
    """main() of every module: build it and run it; a bug anywhere ends as "unexpected error", not a traceback."""
    instance = module_class.__new__(module_class)   # exists for the report even when __init__ fails
    try:
        instance.__init__()
        instance.run()
    except Exception as exc:  # SystemExit (exit_json, fail_json) is no Exception and passes
        if getattr(instance, "module", None) is None or getattr(instance, "redactor", None) is None:
            raise   # raised while AnsibleModule was being built (ansible-test's introspection does that): not ours to report
        instance.unexpected(exc)


def with_diff(result, before, after, header):
    """Attach a fingerprint-only diff to a result (the module base moves it to `diff`)."""
    if diff_text(before) == diff_text(after):
        return result
    result["_diff"] = dict(before=diff_text(before), after=diff_text(after), before_header=header, after_header=header)
    return result


def merged(defaults, item, keys):
    """A per-token spec: the item's values over the module's top-level ones."""
    spec = {}
    for key in keys:
        value = item.get(key) if item else None
        spec[key] = copy.deepcopy(value if value is not None else defaults.get(key))
    return spec
