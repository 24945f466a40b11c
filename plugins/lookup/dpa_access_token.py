# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: dpa_access_token
short_description: A SolarWinds DPA access token from the refresh token kept in the store
version_added: 0.1.0
description:
  - Gives a task that calls the DPA API an access token, so the playbook never sees the refresh
    token. The refresh token is read from the store entry that M(tokenops.rotation.dpa_refresh_token)
    keeps.
  - The access token cached in that entry is returned while it has more than O(renew_before) left
    and DPA accepts it (C(GET /iwc/api/databases/monitor-information); a DPA restart kills access
    tokens early). Otherwise the refresh token is exchanged at C(POST /iwc/api/security/oauth/token),
    and the new access token is cached in the entry with its expiry, with check-and-set. In check mode
    nothing is cached.
  - Returns only access tokens. Mark tasks that use them with C(no_log=true).
author:
  - tokenops developers (@tokenops)
options:
  _terms:
    description:
      - The ids of the managed refresh tokens (the O(tokenops.rotation.dpa_refresh_token#module:id) of the module),
        whose entries are at C(<prefix>/dpa/<host>/<id>); or full entry paths (with C(/)) for tokens
        that set O(tokenops.rotation.dpa_refresh_token#module:store_path).
    type: list
    elements: str
    required: true
  url:
    description:
      - The DPA server, for example C(https://dpa.example.com:8124) (C(/iwc/api) is added).
      - Its host and port name the store entry, as in the module.
    type: str
    required: true
    env:
      - name: DPA_URL
  validate_certs:
    description: Verify the DPA server's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA that signed the DPA server's certificate (often self-signed).
    type: path
  timeout:
    description: Seconds to wait for each DPA request.
    type: float
    default: 30
  retries:
    description: How often a request is retried on HTTP 429, 502, 503, 504 or a connection error.
    type: int
    default: 3
  renew_before:
    description: Exchange the refresh token again when the cached access token has less than this left.
    type: str
    default: 60s
  probe:
    description:
      - Check the cached access token with C(GET /iwc/api/databases/monitor-information) before returning it.
      - Without the probe, an access token killed by a DPA restart is returned until its expiry.
    type: bool
    default: true
extends_documentation_fragment:
  - tokenops.rotation.store
notes:
  - Runs on the controller. The lookup and the module share the DPA client and the store code.
"""

EXAMPLES = r"""
- name: List the monitored databases with an access token of the stored refresh token
  ansible.builtin.uri:
    url: https://dpa.example.com:8124/iwc/api/databases/monitor-information
    ca_path: /etc/pki/dpa-ca.pem
    headers:
      Authorization: "Bearer {{ lookup('tokenops.rotation.dpa_access_token', 'reporting',
                                       url='https://dpa.example.com:8124', ca_path='/etc/pki/dpa-ca.pem',
                                       store={'backend': 'vault', 'url': 'https://vault.example.com:8200'}) }}"
  no_log: true
  register: monitors
"""

RETURN = r"""
_raw:
  description: One access token per term.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.utils.display import Display

from ansible_collections.tokenops.rotation.plugins.module_utils.dpa import (
    PRODUCT,
    AccessTokens,
    DpaClient,
    api_url,
    cache_fields,
    rejected,
    validate_token_id,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError, HttpClient, Redactor
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import BackOff, Flow, FlowError
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    StoreError,
    check_path,
    path_for,
    resolve_store_params,
    store_from_params,
)
from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.plugin_utils.lookup import CheckedLookup

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

NAME = "tokenops.rotation.dpa_access_token"
display = Display()


class LookupModule(CheckedLookup):
    NAME = NAME
    BOOLEAN_OPTIONS = ("validate_certs", "probe")

    def checked_run(self, terms, variables):
        # Lookups run in check mode too; the cache is then left as it is.
        check_mode = bool((variables or {}).get("ansible_check_mode"))
        redactor = Redactor()
        try:
            # Every term and option is checked before the store is touched or DPA is asked.
            base = api_url(self.get_option("url"))
            validate_certs = validators.boolean(self.get_option("validate_certs"), "validate_certs")
            ca_path = validators.readable_file(self.get_option("ca_path"), "ca_path")
            timeout = validators.timeout(self.get_option("timeout"), "timeout")
            retries = validators.count(self.get_option("retries"), "retries", maximum=100)
            renew_before = validators.duration(self.get_option("renew_before"), "renew_before")
            probe = validators.boolean(self.get_option("probe"), "probe")
            params = resolve_store_params(self.get_option("store"))
            terms = validators.items(terms, "terms", str, "a token id or an entry path (a string)", required=True)
            paths = [self._path(term, index, params, base) for index, term in enumerate(terms)]
            store = store_from_params(params)
        except StoreError as exc:
            raise AnsibleLookupError("%s: %s" % (NAME, to_native(exc)))
        http = HttpClient(PRODUCT, base, validate_certs=validate_certs, ca_path=ca_path, timeout=timeout, retries=retries,
                          redactor=redactor, verbosity=display.verbosity)
        tokens = AccessTokens(DpaClient(http), renew_before=renew_before, probe=probe)
        try:
            return [self._access_token(store, path, tokens, check_mode, redactor) for path in paths]
        except ApiError as exc:
            hint = (" The stored refresh token no longer works: create a new one in DPA and adopt it with "
                    "tokenops.rotation.dpa_refresh_token state: rotated" if rejected(exc) else "")
            raise AnsibleLookupError("%s: %s.%s" % (NAME, redactor.scrub(str(exc)), hint))
        except (StoreError, ValueError) as exc:   # ValueError: a stored refresh token that is no JWT
            raise AnsibleLookupError("%s: %s" % (NAME, redactor.scrub(to_native(exc))))
        finally:
            http.close()
            store.close()

    @staticmethod
    def _path(term, index, params, base):
        name = "terms[%d]" % index
        validators.text(term, name)
        if "/" in term:
            return check_path(term, "%s (an entry path)" % name)
        validate_token_id(term, name)
        return path_for(params, "dpa", urlsplit(base).netloc, term)

    @staticmethod
    def _access_token(store, path, tokens, check_mode, redactor):
        flow = Flow(store, path, "dpa", check_mode=check_mode)
        record = flow.load() or {}
        if not record.get("secret"):
            raise AnsibleLookupError("%s: no refresh token is stored at %s (%s); store one with tokenops.rotation.dpa_refresh_token"
                                     % (NAME, path, store.describe()))
        redactor.add(record["secret"])
        access, renewed, _how, _probe = tokens.current(record, "exchange the refresh token stored at %s" % path)
        if renewed and not check_mode:
            # A store write without an intent (nothing changes in DPA), with check-and-set; an adoption's intent stays.
            try:
                flow.persist(cache_fields(access), keep_pending=True)
            except (BackOff, FlowError):
                display.warning("%s: %s changed while the access token was renewed; it is returned but not cached" % (NAME, path))
            except StoreError as exc:
                display.warning("%s: the access token is returned but caching it failed: %s" % (NAME, redactor.scrub(to_native(exc))))
        return access.value
