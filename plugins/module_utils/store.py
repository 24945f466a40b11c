# -*- coding: utf-8 -*-
# Copyright (c) tokenops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The secret store interface: errors, Entry, Store, the `store` option spec and the factory.

Backends live in store_vault.py (Vault / OpenBao KV v2) and store_file.py (one ansible-vault
encrypted file). Every error raised here or by a backend names the operation and the path, never
a token, a password, a secret_id or a stored value.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re


from ansible_collections.tokenops.rotation.plugins.module_utils import validators


class StoreError(Exception):
    """Base of every store error; the message never contains secret values."""


class StoreConfigError(StoreError):
    """Bad or missing settings; raised before any request is sent or any file is touched."""


class StoreUnavailable(StoreError):
    """The store cannot be reached: connection refused, timeout, 5xx, sealed, disk error."""


class StoreBusy(StoreUnavailable):
    """The store is there but slow or asks for less: a time-out, 429, 502, 503 (not sealed), 504. Worth waiting out."""


class StoreOutcomeUnknown(StoreBusy):
    """A write was sent but its answer was lost (time-out, connection closed, gateway error): it may have landed.

    Every write is check-and-set, so reading the entry back tells (rotation.Flow does that)."""


class StoreConflict(StoreError):
    """Check-and-set mismatch: someone else wrote first."""


class StoreDenied(StoreError):
    """401/403 from Vault, or a vault password that cannot decrypt the file."""


class Entry:
    """What a read returns.

    ``data`` is None when the entry does not exist. ``version`` is the check-and-set value for
    the next write: 0 when the entry has never existed (or was deleted with all its versions);
    with KV v2 a soft-deleted latest version reads as ``data=None`` with that version number.
    """

    __slots__ = ('data', 'version')

    def __init__(self, data=None, version=0):
        self.data = data
        self.version = int(version or 0)

    @property
    def exists(self):
        return self.data is not None

    def __eq__(self, other):
        if not isinstance(other, Entry):
            return NotImplemented
        return self.data == other.data and self.version == other.version

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def __repr__(self):
        # never show the data: it holds secrets
        return 'Entry(exists=%r, version=%d)' % (self.exists, self.version)


class Store:
    """Interface of a store backend."""

    kind = None  # "vault" or "file"

    def read(self, path):
        """Return the Entry at path (Entry(None, 0) when absent)."""
        raise NotImplementedError

    def write(self, path, data, cas):
        """Write data (a dict) at path if the current version equals cas (0: must not exist).

        Returns the new version; raises StoreConflict when the current version differs.
        """
        raise NotImplementedError

    def delete(self, path):
        """Remove the entry and all its versions; False when it did not exist."""
        raise NotImplementedError

    def list(self, prefix):
        """Entry paths below prefix, recursively, sorted."""
        raise NotImplementedError

    def describe(self):
        """A one-line description without secrets: "vault https://host:8200 mount secret", "file /path"."""
        raise NotImplementedError

    def close(self):
        """Release resources (HTTP sessions); the store must not be used afterwards."""

    def note_wait(self, seconds):
        """A caller waited `seconds` for a busy store and tries again: counted in the endpoint's back-pressure
        figures where the store has an endpoint."""

    def note_read_back(self):
        """A write whose answer was lost was resolved by reading the entry back (counted as note_wait is)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def error_text(store, exc):
    """A store error's message naming the store once.

    The backends name the store in nearly every error ("vault store (vault https://... mount secret): write ... failed:
    ...", "file store /path: ..."); only the others get the store's description in front.
    """
    text = str(exc)
    if store is None or text.startswith(('vault store', 'file store')):
        return text
    return 'store (%s): %s' % (store.describe(), text)


DEFAULT_FILE_PATH = '~/.ansible/tokenops/store.vault'

# Suboptions of the module's `store` option (see plugins/doc_fragments/store.py).
STORE_OPTIONS = dict(
    backend=dict(type='str', default='file', choices=['file', 'vault']),
    prefix=dict(type='str', default='tokenops'),
    host=dict(type='str'),
    file_path=dict(type='path', default=DEFAULT_FILE_PATH, fallback=(validators.env_fallback, ['TOKENOPS_STORE_FILE'])),
    create_folder=dict(type='bool', default=False),
    # TOKENOPS_VAULT_PASSWORD_FILE first: AWX credential types may not inject ANSIBLE_* variables.
    vault_password_file=dict(type='path', fallback=(validators.env_fallback, ['TOKENOPS_VAULT_PASSWORD_FILE', 'ANSIBLE_VAULT_PASSWORD_FILE'])),
    vault_password=dict(type='str', no_log=True, fallback=(validators.env_fallback, ['TOKENOPS_VAULT_PASSWORD'])),
    url=dict(type='str', fallback=(validators.env_fallback, ['VAULT_ADDR'])),
    auth_method=dict(type='str', default='token', choices=['token', 'approle'], fallback=(validators.env_fallback, ['VAULT_AUTH_METHOD'])),
    token=dict(type='str', no_log=True, fallback=(validators.env_fallback, ['VAULT_TOKEN'])),
    role_id=dict(type='str', fallback=(validators.env_fallback, ['VAULT_ROLE_ID'])),
    secret_id=dict(type='str', no_log=True, fallback=(validators.env_fallback, ['VAULT_SECRET_ID'])),
    approle_mount=dict(type='str', default='approle'),
    namespace=dict(type='str', fallback=(validators.env_fallback, ['VAULT_NAMESPACE'])),
    mount_point=dict(type='str', default='secret'),
    ca_cert=dict(type='path', fallback=(validators.env_fallback, ['VAULT_CACERT'])),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='int', default=10),
)

# The module's `store` option: argument_spec=dict(store=STORE_ARG_SPEC, ...)
STORE_ARG_SPEC = dict(type='dict', apply_defaults=True, options=STORE_OPTIONS)


def _defaults():
    return dict((name, spec.get('default')) for name, spec in STORE_OPTIONS.items())


def store_params(params):
    """Fill the suboptions missing from params (or None) with their defaults (not env)."""
    merged = _defaults()
    for key, value in (params or {}).items():
        if value is not None:
            merged[key] = value
    return merged


def resolve_store_params(params=None):
    """Validate a raw `store` dict the way a module would (types, choices, env fallbacks, defaults).

    For callers that are not modules (the lookup plugin, tests). Raises StoreConfigError.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    if params is not None and not isinstance(params, dict):
        raise StoreConfigError('store must be a dictionary of store settings, got %s' % type(params).__name__)
    result = ArgumentSpecValidator({'store': STORE_ARG_SPEC}).validate({'store': dict(params or {})})
    if result.error_messages:
        # validation messages name options and types; no_log values are never echoed
        raise StoreConfigError('invalid store settings: %s' % '; '.join(result.error_messages))
    return result.validated_parameters['store']


_SEGMENT_BAD = re.compile(r'[\x00-\x1f\x7f]')


def check_path(path, what='store path'):
    """Return path normalised (no leading/trailing '/'); StoreConfigError on '..', '.', empty segments or control characters."""
    if not isinstance(path, str):
        raise StoreConfigError('%s must be a string, got %s' % (what, type(path).__name__))
    if _SEGMENT_BAD.search(path):   # a line break copied with it, before the blanks around it are stripped
        raise StoreConfigError('%s %s has control characters' % (what, validators.shown(path)))
    stripped = path.strip().strip('/')
    if not stripped:
        raise StoreConfigError('%s is empty' % what)
    for segment in stripped.split('/'):
        if segment in ('', '.', '..'):
            raise StoreConfigError("%s %s has an empty, '.' or '..' segment" % (what, validators.shown(path)))
        if segment != segment.strip():
            raise StoreConfigError('%s %s has a segment with surrounding blanks' % (what, validators.shown(path)))
    return stripped


def check_prefix(prefix, what='store prefix'):
    """Like check_path, but an empty prefix (the root) is allowed."""
    if prefix is None or (isinstance(prefix, str) and not prefix.strip().strip('/')):
        return ''
    return check_path(prefix, what)


def normalize_host(host):
    """The host segment of an entry path: 'https://User@Das.Example.com:8443/api' -> 'das.example.com_8443'; 'h:443' -> 'h_443'.

    A URL's host is lowercased; user info is dropped (it may hold a password); ':' becomes '_'
    (so the port follows an underscore, and the segment is a plain file or folder name everywhere).
    """
    if host is None:
        return ''
    value = str(host).strip()
    if '://' in value:
        value = value.split('://', 1)[1]
        value = value.split('/', 1)[0].split('?', 1)[0].split('#', 1)[0]
        value = value.rsplit('@', 1)[-1].lower()
    value = value.strip('/')
    if value.startswith('[') and ']' in value:  # [::1]:8443
        addr, rest = value[1:].split(']', 1)
        value = addr + rest
    return value.replace(':', '_')


def path_for(params, product, host_default, token_id):
    """The default entry path `<prefix>/<product>/<host>/<token id>`.

    host is params['host'] when set, else host_default (a host, host:port or the API URL).
    token_id may contain '/' (DAS system token ids). Raises StoreConfigError.
    """
    params = params or {}
    prefix = params.get('prefix')
    if prefix is None:
        prefix = STORE_OPTIONS['prefix']['default']
    prefix = check_prefix(prefix)
    product = check_path(product or '', 'product')
    if '/' in product:
        raise StoreConfigError('product %r must be a single path segment' % product)
    host = normalize_host(params.get('host') or host_default)
    if not host:
        raise StoreConfigError('cannot build the store path: no store.host and no API host')
    host = check_path(host, 'store host')
    if '/' in host:
        raise StoreConfigError('store host %r must not contain "/"' % host)
    if token_id is None or str(token_id).strip() == '':
        raise StoreConfigError('cannot build the store path: the token id is empty')
    token_id = check_path(str(token_id), 'token id')
    parts = [p for p in (prefix, product, host, token_id) if p]
    return '/'.join(parts)


def term_path(term, prefix, products, what='entry path'):
    """The entry path a lookup term names.

    A term is an entry path as the modules report it in `store_path` (`tokenops/das/h_8443/app`),
    or `<product>/<host>/<token id>` below prefix. The host segment after a product may also be
    written as the API's `host:port` (`das/h:8443/app`): it is normalised as the modules do.
    """
    path = check_path(term, what)
    prefix = check_prefix(prefix)
    segments = path.split('/')
    if segments[0] in products:
        at = 0
        if prefix:
            segments = prefix.split('/') + segments
            at = len(prefix.split('/'))
    elif prefix and path.startswith(prefix + '/') and len(segments) > len(prefix.split('/')) and segments[len(prefix.split('/'))] in products:
        at = len(prefix.split('/'))
    else:
        return path
    if len(segments) > at + 2:
        segments[at + 1] = normalize_host(segments[at + 1])
    return check_path('/'.join(segments), what)


def validate_store_params(params):
    """Check the `store` settings with the shared validators; StoreConfigError names the option.

    Nothing is read, written or sent: a file is only looked at (does it exist, can it be read).
    Returns params (defaults filled in) with the vault URL stripped of surrounding blanks.
    """
    params = store_params(params)
    backend = params.get('backend')
    try:
        if backend not in ('file', 'vault'):
            raise ValueError('store.backend must be one of file, vault; got %s' % validators.shown(backend))
        prefix = params.get('prefix')
        if isinstance(prefix, str) and prefix and not prefix.strip():
            raise ValueError("store.prefix is blank; give a path such as tokenops, or '' for the root of the mount")
        check_prefix(prefix, 'store.prefix')
        validators.text(params.get('host'), 'store.host', required=False)
        validators.timeout(params.get('timeout'), 'store.timeout')
        validators.boolean(params.get('validate_certs'), 'store.validate_certs')
        if backend == 'file':
            validators.text(params.get('file_path'), 'store.file_path (or TOKENOPS_STORE_FILE)')
            validators.text(params.get('vault_password'), 'store.vault_password', required=False, blank=True, secret=True)
            if not params.get('vault_password'):
                validators.readable_file(params.get('vault_password_file'),
                                         'store.vault_password_file (or TOKENOPS_VAULT_PASSWORD_FILE, ANSIBLE_VAULT_PASSWORD_FILE)')
        else:
            params['url'] = validators.url(params.get('url'), 'store.url (or VAULT_ADDR)',
                                           what='the Vault or OpenBao server, an http or https URL such as https://vault.example.com:8200')
            for name in ('token', 'secret_id'):
                validators.text(params.get(name), 'store.%s' % name, required=False, blank=True, secret=True)
            for name in ('role_id', 'auth_method'):
                validators.text(params.get(name), 'store.%s' % name, required=False, blank=True)
            validators.readable_file(params.get('ca_cert'), 'store.ca_cert (or VAULT_CACERT)')
    except ValueError as exc:
        raise StoreConfigError(str(exc))
    return params


def store_from_params(params, request_log=None):
    """Build the configured Store from the module's validated `store` dict.

    Validates the settings and raises StoreConfigError before touching the network or disk.
    request_log, when given, is called with (method, path) for every request (vault) or
    operation (file), so tests can count store traffic.
    """
    params = validate_store_params(params)
    backend = params.get('backend')
    if backend == 'vault':
        from ansible_collections.tokenops.rotation.plugins.module_utils.store_vault import VaultStore
        return VaultStore.from_params(params, request_log=request_log)
    if backend == 'file':
        from ansible_collections.tokenops.rotation.plugins.module_utils.store_file import FileStore
        return FileStore.from_params(params, request_log=request_log)
    raise StoreConfigError('store.backend must be one of file, vault; got %r' % (backend,))
