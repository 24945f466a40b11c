#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: das_token
short_description: Create, rotate and revoke Styra DAS API tokens, persisting every secret to a store
version_added: 0.1.0
description:
  - Manages Styra DAS API tokens (workspace tokens and C(systems/<system id>/<name>) tokens)
    through C(PUT /v1/tokens/{id}), C(DELETE /v1/tokens/{id}) and their Authz v2 role bindings.
  - A secret DAS issues is shown once. The module writes it to the configured store in the same
    task, before it returns, and never returns it unless O(return_secret=true).
  - Rotation records its intent in the store before it asks DAS for a new secret, so an
    interrupted run is recovered by the next one (it regenerates again) or reported as
    C(needs_reconcile) with what a person must do.
  - O(strategy=overlap) rotates without a moment in which consumers hold a dead secret. A second
    token id with the same fields and role bindings is created, persisted, verified and promoted,
    and the old id is revoked after O(grace_period).
  - The refresher flow of the DAS documentation is supported. A refresher token (role
    WorkspaceTokenRefresher or SystemTokenRefresher) kept in the store regenerates application
    tokens, and can renew itself, persisting its new value before anything else.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.das
  - tokenops.rotation.connection
  - tokenops.rotation.store
  - tokenops.rotation.rotation
  - tokenops.rotation.rotation.run
attributes:
  check_mode:
    support: full
    description: Reads DAS and the store, predicts the action exactly, writes nothing.
  diff_mode:
    support: full
    description: Shows fingerprints, ids and times; never a secret.
options:
  state:
    description:
      - V(present) makes sure the token exists, its fields and role bindings are as given, and its
        secret is in the store; it rotates only when the policy says the token is due.
      - V(rotated) rotates now.
      - V(absent) revokes the token (and the previous id of an overlap), removes it from its role
        bindings and deletes the store entry.
    type: str
    choices: [present, rotated, absent]
    default: present
  id:
    description:
      - The token id. Workspace tokens have ids such as C(application-token) or C(ci/deployer);
        system tokens C(systems/<system id>/<name>).
      - Mutually exclusive with O(tokens).
    type: str
  tokens:
    description:
      - Several tokens in one task, handled with O(concurrency) at a time. Each item takes the
        per-token options (O(id), O(description), O(allow_path_patterns), O(allow_all_paths),
        O(ttl), O(role_bindings), O(strategy), O(overlap_id), O(grace_period), O(store_path));
        an option an item leaves out takes the module's top-level value.
      - An item may also be just the token id.
    type: list
    elements: raw
  description:
    description: The token's description.
    type: str
    default: ""
  allow_path_patterns:
    description:
      - Regular expressions of the API paths the token may call.
      - DAS allows every path when this list is empty or missing, so an empty list is refused
        unless O(allow_all_paths=true).
    type: list
    elements: str
  allow_all_paths:
    description:
      - Say explicitly that the token may call every path (DAS receives an empty list).
    type: bool
    default: false
  ttl:
    description:
      - Lifetime of each secret, as a Go duration (C(24h), C(720h), C(90m)); DAS has no C(d) unit.
      - When omitted DAS gives about 10 years.
      - A changed O(ttl) takes effect at the next rotation; DAS's echo of a TTL is not compared.
    type: str
  role_bindings:
    description:
      - Authz v2 role bindings the token must have, added and removed idempotently. When omitted
        the bindings are left alone.
      - Needs O(api_token) with WorkspaceAdministrator rights.
    type: list
    elements: dict
    suboptions:
      role_id:
        description: Role, for example C(SystemOPA), C(WorkspaceViewer), C(SystemTokenRefresher).
        type: str
        required: true
      resource_kind:
        description: Kind of the resource the role applies to, for example C(system) or C(workspace).
        type: str
        required: true
      resource_id:
        description: Id of that resource, for example the system id.
        type: str
        required: true
  strategy:
    description:
      - V(regenerate) re-issues the secret of the same id; the old secret stops working at once.
      - V(overlap) alternates between O(id) and O(overlap_id) so two secrets live side by side for
        O(grace_period). Needs O(api_token).
    type: str
    choices: [regenerate, overlap]
    default: regenerate
  overlap_id:
    description: The second token id of O(strategy=overlap). Defaults to O(id) with C(-b) appended.
    type: str
  grace_period:
    description:
      - With O(strategy=overlap), how long the previous id keeps working after the new one is
        promoted. It is revoked by the first run after that.
    type: str
    default: 1h
  store_path:
    description: Store entry path of the token, instead of C(<prefix>/das/<host>/<id>).
    type: str
  api_token:
    description:
      - Secret of a DAS token with the rights the task needs (WorkspaceAdministrator to create
        tokens and manage role bindings).
      - Falls back to the environment variable E(STYRA_DAS_TOKEN).
      - Either this or O(refresher) is required.
  refresher:
    description:
      - A refresher token kept in the store, used instead of O(api_token) to regenerate
        application tokens, as the DAS documentation's refresher flow does.
      - A refresher can only update tokens. It cannot create tokens, read them or manage role
        bindings, so the due decision uses the store's record and a probe of the stored secret.
    type: dict
    suboptions:
      id:
        description: The refresher token's id.
        type: str
        required: true
      store_path:
        description: Its store entry, instead of C(<prefix>/das/<host>/<id>).
        type: str
      initial_secret:
        description:
          - The refresher's secret, written to the store the first time only (when the store has
            no entry for it). Later runs use the stored value.
          - Falls back to the environment variable E(STYRA_DAS_REFRESHER_SECRET), which the
            Styra DAS AWX credential type of this collection sets. Read from the environment, the secret never
            becomes a module argument, so it is not in the module payload Ansible writes to its temporary folder.
          - An empty value counts as not given, so the task keeps working after the credential that set the
            variable is gone.
        type: str
      self_rotate:
        description:
          - Let the refresher renew itself when it is due (within O(rotate_before) of its expiry,
            or older than O(max_age)), before it regenerates anything else. Its new secret is
            persisted before it is used.
          - A refresher whose expiry is unknown (adopted through O(refresher.initial_secret), with
            no O(api_token) to read its expiry from DAS and no O(refresher.expires_at)) renews
            itself at once with its O(refresher.ttl), which makes its expiry known.
          - Without it, a refresher within O(rotate_before) of its expiry, or whose expiry is
            unknown, gives a warning on every run.
        type: bool
        default: false
      expires_at:
        description:
          - When the refresher's current secret expires (ISO 8601, for example
            C(2027-01-31T00:00:00Z)), as shown in DAS. Read when the store does not know it yet;
            with O(api_token) the module asks DAS instead.
        type: str
      ttl:
        description: Lifetime the refresher asks for when it renews itself. Required with O(refresher.self_rotate).
        type: str
      description:
        description: The refresher's description, re-sent in full when it renews itself.
        type: str
        default: ""
      allow_path_patterns:
        description:
          - The refresher's path patterns, re-sent in full when it renews itself. Required with
            O(refresher.self_rotate) unless O(refresher.allow_all_paths=true).
        type: list
        elements: str
      allow_all_paths:
        description: The refresher may call every path (DAS receives an empty list).
        type: bool
        default: false
  verify:
    description:
      - The probe made with every new secret, and with the stored secret of a token that is not
        due. HTTP 401 means the secret does not work; 403 means it authenticates but lacks the
        right, which passes unless O(verify.require_authorized=true).
    type: dict
    suboptions:
      enabled:
        description: Probe at all.
        type: bool
        default: true
      path:
        description:
          - Path of the probe; C({id}) is replaced by the token id.
          - DAS refuses a path outside a token's O(allow_path_patterns) with a status it does not
            document (403 is likely, 401 possible). When this path is outside the token's patterns,
            the probe goes to the literal start of one of its patterns instead (for
            C(^/v1/systems/pay/.*), C(/v1/systems/pay/)); when no pattern gives one, a 401 is not
            taken as proof that the secret is dead (the result says C(unproven)).
        type: str
        default: /v1/tokens/{id}
      require_authorized:
        description: Fail when the probe gets 403.
        type: bool
        default: false
      every:
        description:
          - How often the stored secret of a token that is not due is probed, as a duration
            (C(7d), C(12h)); V(0) probes on every run.
          - A secret DAS has just issued counts as proven at that time. A nightly job with the
            default probes each token about once a week, so a run with nothing due makes one request
            per token (the GET that says the token exists and when it expires); RV(verified_at)
            says when each secret was last proven. A probe that passes stores that time, without
            changing the token.
          - A token that DAS says was changed after its secret was last proven (C(last_modified_at),
            for example regenerated with another tool) is probed on that run whatever this says.
        type: str
        default: 7d
  audit:
    description:
      - Also list every token of the tenant (one C(GET /v1/tokens), before the token work) and
        return, in RV(audit), the tokens that no one manages, that allow every path, or that
        practically never expire, as M(tokenops.rotation.das_token_info) does.
      - Needs O(api_token) with the right to list tokens.
    type: bool
    default: false
  managed:
    description:
      - Ids the inventory host keeps besides O(tokens) (their overlap ids and the refresher count
        too), for O(audit).
    type: list
    elements: str
    default: []
  audit_max_lifetime:
    description: For O(audit), a token whose expiry is further away than this practically never expires.
    type: str
    default: 365d
seealso:
  - module: tokenops.rotation.das_token_info
  - name: Rotate DAS API tokens
    description: The refresher-token flow this module automates.
    link: https://docs.styra.com/das/administration/token-management/rotate-das-api-tokens
"""

EXAMPLES = r"""
- name: An application token for a system's OPA, bound to SystemOPA, secret stored in OpenBao
  tokenops.rotation.das_token:
    url: https://example.styra.com
    # api_token from STYRA_DAS_TOKEN: read by the module, it is no module argument (not in the payload on disk)
    id: systems/0f1e2d3c/opa-version
    description: OPA of the payments system
    allow_path_patterns: ["^/v1/systems/0f1e2d3c/.*"]
    ttl: 720h
    role_bindings:
      - role_id: SystemOPA
        resource_kind: system
        resource_id: 0f1e2d3c
    rotate_before: 7d
    store:
      backend: vault
      url: https://vault.example.com:8200
      mount_point: secret

- name: Rotate with overlap, so consumers never hold a dead secret
  tokenops.rotation.das_token:
    url: https://example.styra.com
    id: ci-deployer
    strategy: overlap
    grace_period: 2h
    allow_path_patterns: ["^/v1/policies/.*"]
    ttl: 168h
    state: rotated

- name: Many tokens in one task, regenerated by a refresher that renews itself
  tokenops.rotation.das_token:
    url: https://example.styra.com
    refresher:
      id: token-refresher
      self_rotate: true
      ttl: 720h
      allow_path_patterns: ["^/v1/tokens/.*"]
    tokens:
      - id: app-a
        allow_path_patterns: ["^/v1/data/a/.*"]
      - id: app-b
        allow_path_patterns: ["^/v1/data/b/.*"]
    ttl: 24h
    rotate_before: 6h
    store:
      file_path: /etc/tokenops/store.vault
      vault_password_file: /etc/tokenops/vault-pass

- name: Revoke a token and delete its store entry
  tokenops.rotation.das_token:
    url: https://example.styra.com
    id: ci-deployer
    state: absent
"""

RETURN = r"""
changed:
  description: Whether DAS or the store changed (or would, in check mode).
  returned: always
  type: bool
action:
  description:
    - What was done to the token (a single O(id)).
    - V(none), V(created), V(updated) (fields or bindings), V(rotated), V(revoked),
      V(recovered) (an interrupted rotation was completed), V(needs_reconcile) (a person must act; see C(msg)).
  returned: when O(id) is given
  type: str
  sample: rotated
id:
  description: The managed token's id as given.
  returned: when O(id) is given
  type: str
  sample: systems/0f1e2d3c/opa-version
token_id:
  description: The DAS id whose secret is in the store now (with O(strategy=overlap), O(id) or O(overlap_id)).
  returned: when O(id) is given
  type: str
fingerprint:
  description: C(sha256:) and the first 12 hex digits of the SHA-256 of the stored secret.
  returned: when O(id) is given and a secret is stored
  type: str
  sample: sha256:3f2a9c0d1b7e
expires_at:
  description: When the stored secret expires (UTC, ISO 8601).
  returned: when O(id) is given
  type: str
  sample: "2026-12-23T06:20:00Z"
rotated_at:
  description: When the secret was last rotated (UTC, ISO 8601).
  returned: when O(id) is given
  type: str
store_path:
  description: The store entry of the token.
  returned: when O(id) is given
  type: str
  sample: tokenops/das/example.styra.com/systems/0f1e2d3c/opa-version
store_version:
  description: The store entry's version after this run (0 when it does not exist).
  returned: when O(id) is given
  type: int
verified:
  description:
    - Result of the probe made with the new secret, C(authorized) (2xx or 404), C(authenticated)
      (403), or C(unproven) (401 on a path outside the token's patterns; see O(verify.path)).
  returned: when a secret was minted and O(verify.enabled=true)
  type: str
previous:
  description: The previous id of an overlap rotation, its fingerprint and when it is revoked.
  returned: while an overlap grace period runs
  type: dict
pending:
  description: The intent of a rotation that is in progress or was interrupted.
  returned: when the store entry has one
  type: dict
backed_off:
  description: True when another run held the token and this one left it alone.
  returned: when it happened
  type: bool
recovered_step:
  description:
    - The step of the interrupted rotation that this run settled first.
    - With RV(action=recovered) that was all; with V(rotated) the run then rotated the token too, because it was due.
  returned: when the run found an interrupted rotation
  type: str
backed_off_at:
  description: When this run found the other run's intent and left the token alone (UTC, ISO 8601).
  returned: with RV(backed_off)
  type: str
holder_state:
  description:
    - What the run that held the token had done when this run re-read the entry, after its other tokens.
    - V(finished) (its intent is gone), V(taken_over) (another run recovers it), V(working) (its lease still runs)
      or V(stopped) (its intent is still there and its lease ran out, so it died mid-rotation). The report of
      playbook C(tokenops.rotation.rotate) fails the job (V(backed_off_stale)) only for V(stopped).
  returned: with RV(backed_off), when the entry could be re-read
  type: str
  sample: finished
holder_checked_at:
  description: When RV(holder_state) was found (UTC, ISO 8601).
  returned: with RV(holder_state)
  type: str
secret:
  description: The current secret. Only with O(return_secret=true).
  returned: when O(return_secret=true)
  type: str
results:
  description: One result as above per item of O(tokens).
  returned: when O(tokens) is given
  type: list
  elements: dict
refresher:
  description: The result for the refresher token (it may have renewed itself).
  returned: when O(refresher) is given
  type: dict
verified_at:
  description: When the stored secret was last proven to work (issued by DAS, or a probe that passed); null when never.
  returned: success
  type: str
audit:
  description:
    - With O(audit), the tenant's tokens with findings (C(unmanaged), C(allows_all_paths), C(never_expires)),
      as M(tokenops.rotation.das_token_info) returns them.
  returned: when O(audit=true) and the list succeeded
  type: list
  elements: dict
audit_error:
  description: With O(audit), why the tenant could not be listed (the token work went on).
  returned: when the audit failed
  type: str
report_spool:
  description: The file O(report_spool) the result was also written to.
  returned: when O(report_spool) is given
  type: str
msg:
  description: What went wrong, naming the product, the step, the HTTP status and DAS's error code; or what a person must do.
  returned: on failure and with V(needs_reconcile)
  type: str
backpressure:
  description:
    - Per store and product endpoint (C(scheme://host:port)) this task used, what a slow or rate-limiting endpoint cost it.
    - C(waited_s) seconds spent waiting (Retry-After pauses, a busy store waited out, a free slot under the endpoint's
      adaptive limit), C(retries) requests sent again, C(lowest_concurrency) the fewest requests the endpoint was allowed
      in flight (at most O(concurrency)), C(throttled) 429 answers, C(timeouts), C(slow_answers) (slower than half the
      timeout), C(requests), C(resolved_by_read_back) store writes whose lost answer was settled by reading the entry back.
  returned: when the task sent a request
  type: dict
  sample: {"http://127.0.0.1:8200": {"waited_s": 3.2, "retries": 14, "lowest_concurrency": 4, "throttled": 12,
           "timeouts": 0, "slow_answers": 0, "requests": 1520, "resolved_by_read_back": 0}}
"""

import re


from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreConfigError

from ansible_collections.tokenops.rotation.plugins.module_utils.das import (
    DasClient,
    audit_findings,
    system_of,
    validate_token_id,
    validate_ttl,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.das_rotation import DasSteps
from ansible_collections.tokenops.rotation.plugins.module_utils.module import (
    InputError,
    TokenModule,
    merged,
    run_module,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import parse_time, utcnow
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

TOKEN_KEYS = ("id", "description", "allow_path_patterns", "allow_all_paths", "ttl", "role_bindings",
              "strategy", "overlap_id", "grace_period", "store_path")

BINDING_SPEC = dict(role_id=dict(type="str", required=True), resource_kind=dict(type="str", required=True),
                    resource_id=dict(type="str", required=True))

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "rotated", "absent"], default="present"),
    id=dict(type="str"),
    tokens=dict(type="list", elements="raw", no_log=False),  # token ids and settings, not secrets
    description=dict(type="str", default=""),
    allow_path_patterns=dict(type="list", elements="str"),
    allow_all_paths=dict(type="bool", default=False),
    ttl=dict(type="str"),
    role_bindings=dict(type="list", elements="dict", options=BINDING_SPEC),
    strategy=dict(type="str", choices=["regenerate", "overlap"], default="regenerate"),
    overlap_id=dict(type="str"),
    grace_period=dict(type="str", default="1h"),
    store_path=dict(type="str"),
    api_token=dict(type="str", no_log=True, fallback=(validators.env_fallback, ["STYRA_DAS_TOKEN"])),
    refresher=dict(type="dict", options=dict(
        id=dict(type="str", required=True),
        store_path=dict(type="str"),
        initial_secret=dict(type="str", no_log=True, fallback=(validators.env_fallback, ["STYRA_DAS_REFRESHER_SECRET"])),
        self_rotate=dict(type="bool", default=False),
        expires_at=dict(type="str"),
        ttl=dict(type="str"),
        description=dict(type="str", default=""),
        allow_path_patterns=dict(type="list", elements="str"),
        allow_all_paths=dict(type="bool", default=False),
    )),
    verify=dict(type="dict", apply_defaults=True, options=dict(
        enabled=dict(type="bool", default=True),
        path=dict(type="str", default="/v1/tokens/{id}"),
        require_authorized=dict(type="bool", default=False),
        every=dict(type="str", default="7d"),
    )),
    audit=dict(type="bool", default=False),
    managed=dict(type="list", elements="str", default=[]),
    audit_max_lifetime=dict(type="str", default="365d"),
)

TOKEN_ITEM_TYPES = dict(id=str, description=str, allow_path_patterns=list, allow_all_paths=bool, ttl=str,
                        role_bindings=list, strategy=str, overlap_id=str, grace_period=str, store_path=str)
ITEM_KIND_NAMES = {str: "a string", list: "a list", bool: "true or false"}


class DasTokenModule(TokenModule):
    product = "das"
    product_name = "Styra DAS"
    url_env = "STYRA_DAS_URL"

    def __init__(self):
        super(DasTokenModule, self).__init__(
            ARGUMENT_SPEC,
            mutually_exclusive=[("id", "tokens")],
            required_one_of=[("id", "tokens"), ("api_token", "refresher")],
        )
        self.single = self.params["id"] is not None

    # -- input checks, all before any request

    def token_specs(self):
        return self._specs

    def validate(self):
        p = self.params
        if p["api_token"] is not None:
            validators.text(p["api_token"], "api_token", secret=True)
        items = p["tokens"] if p["tokens"] is not None else [{"id": p["id"]}]
        if not items:
            raise InputError("tokens must list at least one token")
        specs = []
        seen = set()
        for index, item in enumerate(items):
            where = "tokens[%d]" % index if p["tokens"] is not None else "the token"
            if isinstance(item, str):
                item = {"id": item}
            if not isinstance(item, dict):
                raise InputError("%s must be a dictionary with at least an id, or a token id; got %s (%s)"
                                 % (where, validators.kind_of(item), validators.shown(item)))
            unknown = sorted(str(key) for key in set(item) - set(TOKEN_KEYS))
            if unknown:
                raise InputError("%s has unknown option(s) %s; each item takes %s"
                                 % (where, validators.cut(", ".join(unknown)), ", ".join(TOKEN_KEYS)))
            for key, kind in TOKEN_ITEM_TYPES.items():
                value = item.get(key)
                if value is not None and not isinstance(value, kind):
                    raise InputError("%s: %s must be %s, got %s (%s)"
                                     % (where, key, ITEM_KIND_NAMES[kind], validators.kind_of(value), validators.shown(value)))
            spec = merged(p, item, TOKEN_KEYS)
            spec["id"] = item.get("id") if p["tokens"] is not None else p["id"]
            self._check_spec(spec, where)
            if spec["id"] in seen:
                raise InputError("token %s is listed twice" % spec["id"])
            seen.add(spec["id"])
            specs.append(spec)
        self._check_refresher()
        self._check_verify()
        if p["audit"] and not p["api_token"]:
            raise InputError("audit lists every token of the tenant (GET /v1/tokens) and needs api_token "
                             "(or STYRA_DAS_TOKEN) with the right to list tokens")
        self.audit_max_lifetime = validators.duration(p["audit_max_lifetime"], "audit_max_lifetime")
        if p["state"] != "absent" and not p["api_token"]:
            for spec in specs:
                if spec["role_bindings"] is not None:
                    raise InputError("token %s: role_bindings need api_token; a refresher token cannot manage role bindings" % spec["id"])
                if spec["strategy"] == "overlap":
                    raise InputError("token %s: strategy overlap creates a second token id and needs api_token; "
                                     "a refresher token can only regenerate existing tokens" % spec["id"])
        if p["state"] == "absent" and not p["api_token"]:
            raise InputError("state absent revokes tokens and needs api_token; a refresher token can only regenerate")
        self._specs = specs

    def _check_spec(self, spec, where):
        try:
            validate_token_id(spec["id"], "id")
            if spec["overlap_id"] is None:
                spec["overlap_id"] = spec["id"] + "-b"
            validate_token_id(spec["overlap_id"], "overlap_id")
            validate_ttl(spec["ttl"], "ttl")
            spec["grace_seconds"] = validators.duration(spec["grace_period"], "grace_period")
            self.store_path(spec["id"], spec["store_path"])
        except (ValueError, StoreConfigError) as exc:
            raise InputError("%s: %s" % (where, exc))
        if spec["overlap_id"] == spec["id"]:
            raise InputError("%s: overlap_id must differ from id" % where)
        if system_of(spec["overlap_id"]) != system_of(spec["id"]):
            raise InputError("%s: overlap_id %s must be in the same namespace as %s" % (where, spec["overlap_id"], spec["id"]))
        if spec["strategy"] not in ("regenerate", "overlap"):
            raise InputError("%s: strategy must be regenerate or overlap, got %s" % (where, validators.shown(spec["strategy"])))
        what = "%s (%s)" % (where, spec["id"]) if where != "the token" else "token %s" % spec["id"]
        if self.params["state"] != "absent":
            spec["allow_path_patterns"] = check_patterns(spec["allow_path_patterns"], spec["allow_all_paths"], what)
        check_bindings(spec["role_bindings"], "%s: role_bindings" % what)

    def _check_refresher(self):
        ref = self.params["refresher"]
        if not ref:
            return
        if ref["initial_secret"] is not None and not ref["initial_secret"].strip():
            ref["initial_secret"] = None      # an unset variable (lookup('env', ...) gives ''), not a blank secret
        try:
            validate_token_id(ref["id"], "refresher.id")
            self.store_path(ref["id"], ref["store_path"])
            if ref["initial_secret"] is not None:
                validators.text(ref["initial_secret"], "refresher.initial_secret", secret=True)
            validate_ttl(ref["ttl"], "refresher.ttl")
        except (ValueError, StoreConfigError) as exc:
            raise InputError(str(exc))
        if ref["initial_secret"]:
            self.secret(ref["initial_secret"])
        if ref["expires_at"]:
            try:
                parse_time(ref["expires_at"])
            except ValueError:
                raise InputError("refresher.expires_at: %r is not an ISO 8601 time such as 2027-01-31T00:00:00Z"
                                 % ref["expires_at"][:60])
        if ref["self_rotate"]:
            if not ref["ttl"]:
                raise InputError("refresher.self_rotate needs refresher.ttl: the refresher must renew itself before its TTL runs out")
            ref["allow_path_patterns"] = check_patterns(ref["allow_path_patterns"], ref["allow_all_paths"], "refresher %s" % ref["id"])

    def _check_verify(self):
        path = self.params["verify"]["path"]
        validators.text(path, "verify.path")
        # A full URL here would send the new secret to another server.
        if not path.startswith("/") or "://" in path or path.startswith("//"):
            raise InputError("verify.path must be a path on the DAS server starting with '/', such as /v1/tokens/{id}; got %s"
                             % validators.shown(path))
        self.verify_every = validators.duration(self.params["verify"]["every"], "verify.every")

    # -- the run

    def run(self):
        if self.params["api_token"]:
            self.secret(self.params["api_token"])
        self.das = DasClient(self.http())
        if self.params["audit"]:
            self._audit()
        steps = DasSteps(self)
        driver = self.use_steps(steps)
        if self.params["refresher"]:
            # The refresher goes first: when it renews itself, its new secret is persisted
            # before it is used for anything else.
            refresher = driver.run(steps.refresher_spec(self.params["refresher"]))
            refresher.pop("_diff", None)
            self.extra_output["refresher"] = refresher
            if refresher.get("failed"):
                self.close()
                self.fail(refresher.get("msg"), changed=bool(refresher.get("changed")), refresher=refresher)
            if refresher.get("backed_off"):
                driver.recheck_holders([refresher])
                self.close()
                self.exit_json(changed=False, backed_off=True, msg=refresher["msg"], refresher=refresher)
        super(DasTokenModule, self).run()

    def _audit(self):
        """The tenant audit in the same run as the token work: one list of the tenant, no second read of the store."""
        p = self.params
        managed = set(p["managed"])
        for spec in self._specs:
            managed.update((spec["id"], spec["overlap_id"]))
        if p["refresher"]:
            managed.add(p["refresher"]["id"])
        try:
            remote = dict((token.get("id"), token) for token in self.das.list_tokens(p["api_token"]))
        except ApiError as exc:
            self.extra_output["audit_error"] = self.redactor.scrub(str(exc))
            return
        self.extra_output["audit"] = audit_findings(remote, managed, self.audit_max_lifetime, utcnow())


def check_patterns(patterns, allow_all, what):
    if allow_all:
        if patterns:
            raise InputError("%s: allow_all_paths and allow_path_patterns exclude each other" % what)
        return []
    if not patterns:
        raise InputError("%s: allow_path_patterns is empty or missing, and DAS then allows every path; "
                         "list the paths the token may call, or set allow_all_paths: true to mean it" % what)
    if not isinstance(patterns, list):
        raise InputError("%s: allow_path_patterns must be a list of regular expressions, got %s (%s)"
                         % (what, validators.kind_of(patterns), validators.shown(patterns)))
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            raise InputError("%s: allow_path_patterns[%d] must be a regular expression (a string), got %s (%s)"
                             % (what, index, validators.kind_of(pattern), validators.shown(pattern)))
        if not pattern:
            raise InputError("%s: allow_path_patterns must not contain an empty pattern" % what)
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise InputError("%s: allow_path_patterns: %s is not a regular expression (%s)"
                             % (what, validators.shown(pattern), validators.cut(str(exc))))
    return list(patterns)


def check_bindings(bindings, what):
    """Role bindings: a list of dictionaries of role_id, resource_kind and resource_id, each a non-empty string."""
    try:
        validators.items(bindings, what, dict, "a dictionary with role_id, resource_kind and resource_id")
    except ValueError as exc:
        raise InputError(str(exc))
    for index, binding in enumerate(bindings or []):
        unknown = sorted(str(key) for key in set(binding) - set(BINDING_SPEC))
        if unknown:
            raise InputError("%s[%d] has unknown key(s) %s; a role binding takes role_id, resource_kind and resource_id"
                             % (what, index, validators.cut(", ".join(unknown))))
        missing = [k for k in BINDING_SPEC if binding.get(k) in (None, "")]
        if missing:
            raise InputError("%s[%d]: a role binding needs %s" % (what, index, ", ".join(missing)))
        for key in BINDING_SPEC:
            try:
                validators.text(binding[key], "%s[%d].%s" % (what, index, key))
            except ValueError as exc:
                raise InputError(str(exc))


def main():
    run_module(DasTokenModule)


if __name__ == "__main__":
    main()
