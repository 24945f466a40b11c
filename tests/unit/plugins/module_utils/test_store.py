# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The store interface against a real OpenBao dev server and the ansible-vault file store."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.tokenops.rotation.plugins.module_utils import store_file
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    STORE_ARG_SPEC,
    Entry,
    StoreConfigError,
    StoreConflict,
    StoreDenied,
    StoreError,
    StoreUnavailable,
    path_for,
    resolve_store_params,
    store_from_params,
    term_path,
)
from ansible_collections.tokenops.rotation.tests.fixtures.openbao import OpenBaoServer, free_port

PASSWORD = 'correct horse battery staple'
SECRET = 'canary-secret-7f3a9c'
ENV_NAMES = ('VAULT_ADDR', 'VAULT_TOKEN', 'VAULT_AUTH_METHOD', 'VAULT_ROLE_ID', 'VAULT_SECRET_ID', 'VAULT_NAMESPACE',
             'VAULT_CACERT', 'TOKENOPS_STORE_FILE', 'ANSIBLE_VAULT_PASSWORD_FILE')


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope='module')
def bao():
    server = OpenBaoServer()
    server.start()
    yield server
    server.stop()


class Log(list):
    def __call__(self, method, path):
        self.append((method, path))


def vault_store(bao, log=None, **params):
    base = {'backend': 'vault', 'url': bao.url, 'token': bao.root_token, 'timeout': 5}
    base.update(params)
    return store_from_params(base, request_log=log)


def file_store(tmp_path, log=None, **params):
    (tmp_path / 'store').mkdir(mode=0o700, exist_ok=True)
    base = {'backend': 'file', 'file_path': str(tmp_path / 'store' / 'tokens.vault'), 'vault_password': PASSWORD}
    base.update(params)
    return store_from_params(base, request_log=log)


def unique():
    return 'tokenops/t-' + uuid.uuid4().hex[:10]


def assert_clean(exc_info, *secrets):
    text = str(exc_info.value)
    for secret in secrets + (SECRET,):
        assert secret not in text, 'a secret leaked into: %s' % text


# -- the contract, for both backends -----------------------------------------------------------

@pytest.fixture(params=['vault', 'file'])
def store(request, tmp_path):
    if request.param == 'vault':
        s = vault_store(request.getfixturevalue('bao'))
    else:
        s = file_store(tmp_path)
    yield s
    s.close()


def test_read_absent(store):
    entry = store.read(unique() + '/missing')
    assert entry == Entry(None, 0)
    assert entry.data is None and entry.version == 0 and not entry.exists


def test_write_cas0_then_read(store):
    path = unique() + '/das/host/tok'
    record = {'secret': SECRET, 'rotation_count': 1, 'expires_at': '2026-11-23T06:20:00Z', 'pending': None,
              'fields': {'roles': ['a', 'b'], 'n': 1.5}}
    assert store.write(path, record, 0) == 1
    entry = store.read(path)
    assert entry.version == 1
    assert entry.data == record
    assert isinstance(entry.data['expires_at'], str)


def test_conflict_on_stale_cas(store):
    path = unique() + '/x'
    assert store.write(path, {'secret': SECRET}, 0) == 1
    with pytest.raises(StoreConflict) as exc:
        store.write(path, {'secret': SECRET + '-2'}, 0)  # cas=0 must mean "must not exist"
    assert path in str(exc.value)
    assert_clean(exc, SECRET + '-2')
    assert store.write(path, {'secret': 'v2'}, 1) == 2
    with pytest.raises(StoreConflict):
        store.write(path, {'secret': 'v3'}, 1)  # stale
    with pytest.raises(StoreConflict):
        store.write(path, {'secret': 'v3'}, 7)  # from the future
    assert store.read(path) == Entry({'secret': 'v2'}, 2)


def test_version_increments(store):
    path = unique() + '/inc'
    versions = []
    cas = 0
    for i in range(4):
        cas = store.write(path, {'n': i}, cas)
        versions.append(cas)
    assert versions == [1, 2, 3, 4]
    assert store.read(path) == Entry({'n': 3}, 4)


def test_delete(store):
    path = unique() + '/del'
    store.write(path, {'secret': SECRET}, 0)
    store.write(path, {'secret': SECRET}, 1)
    assert store.delete(path) is True
    assert store.read(path) == Entry(None, 0)  # all versions gone: cas starts again at 0
    assert store.delete(path) is False
    assert store.write(path, {'secret': SECRET}, 0) == 1


def test_list_recursive(store):
    root = unique()
    paths = [root + '/das/h1/a', root + '/das/h1/systems/s1/b', root + '/das/h2/c', root + '/dpa/h/d']
    for p in paths:
        store.write(p, {'k': 'v'}, 0)
    store.write(root + '-other/x', {'k': 'v'}, 0)  # a sibling prefix that must not match
    assert store.list(root) == sorted(paths)
    assert store.list(root + '/das') == sorted(paths[:3])
    assert store.list(root + '/das/h1/') == sorted(paths[:2])
    assert store.list(root + '/nothing') == []
    store.delete(paths[0])
    assert store.list(root + '/das/h1') == [paths[1]]


def test_bad_paths_rejected(store):
    for bad in ('a/../b', '', 'a//b', '/', './a'):
        with pytest.raises(StoreConfigError):
            store.read(bad)
        with pytest.raises(StoreConfigError):
            store.write(bad, {}, 0)


# -- vault specifics ---------------------------------------------------------------------------

def test_vault_soft_deleted_latest_version_reads_absent_with_its_version(bao):
    path = unique() + '/soft'
    s = vault_store(bao)
    s.write(path, {'secret': SECRET}, 0)
    s.write(path, {'secret': SECRET}, 1)
    bao.kv_soft_delete(path)
    assert s.read(path) == Entry(None, 2)
    with pytest.raises(StoreConflict):
        s.write(path, {'secret': 'x'}, 0)
    assert s.write(path, {'secret': 'again'}, 2) == 3
    bao.kv_soft_delete(path)
    assert s.delete(path) is False  # nothing live, but the metadata is cleaned up
    assert bao.kv_metadata(path) is None
    assert s.read(path) == Entry(None, 0)


def test_vault_writes_real_kv2_with_cas(bao):
    log = Log()
    path = unique() + '/real'
    s = vault_store(bao, log)
    s.write(path, {'secret': SECRET}, 0)
    assert bao.kv_read(path) == {'secret': SECRET}
    meta = bao.kv_metadata(path)
    assert meta['current_version'] == 1
    assert log == [('POST', '/v1/secret/data/' + path)]
    log.clear()
    assert s.delete(path) is True
    assert log == [('GET', '/v1/secret/data/' + path), ('DELETE', '/v1/secret/metadata/' + path)]
    assert bao.kv_metadata(path) is None
    assert s.describe() == 'vault %s mount secret' % bao.url


def test_vault_approle_auth(bao):
    prefix = unique()
    role_id, secret_id = bao.enable_approle(['secret/data/%s/*' % prefix, 'secret/metadata/%s/*' % prefix])
    log = Log()
    s = store_from_params({'backend': 'vault', 'url': bao.url, 'auth_method': 'approle', 'role_id': role_id,
                           'secret_id': secret_id, 'timeout': 5}, request_log=log)
    assert s.write(prefix + '/a/b', {'secret': SECRET}, 0) == 1
    assert s.read(prefix + '/a/b') == Entry({'secret': SECRET}, 1)
    assert s.list(prefix) == [prefix + '/a/b']
    assert log[0] == ('POST', '/v1/auth/approle/login')
    assert log.count(('POST', '/v1/auth/approle/login')) == 1  # one login per store object
    assert bao.kv_read(prefix + '/a/b') == {'secret': SECRET}
    # the policy limits the role to its prefix
    with pytest.raises(StoreDenied) as exc:
        s.write('elsewhere/x', {'secret': SECRET}, 0)
    assert_clean(exc, secret_id, role_id)
    # a bad secret_id is denied, and never echoed
    bad = store_from_params({'backend': 'vault', 'url': bao.url, 'auth_method': 'approle', 'role_id': role_id,
                             'secret_id': 'wrong-secret-id-123', 'timeout': 5})
    with pytest.raises(StoreDenied) as exc:
        bad.read(prefix + '/a/b')
    assert 'approle login' in str(exc.value)
    assert_clean(exc, 'wrong-secret-id-123')


def test_vault_namespace_header_is_sent(bao):
    ns = 'team' + uuid.uuid4().hex[:6]
    bao.create_namespace(ns)
    bao.enable_kv2('secret', namespace=ns)
    path = unique() + '/ns'
    s = vault_store(bao, namespace=ns)
    assert s.write(path, {'secret': SECRET}, 0) == 1
    assert bao.kv_read(path, namespace=ns) == {'secret': SECRET}
    assert bao.kv_read(path) is None  # not in the root namespace
    assert s.read(path).version == 1
    assert vault_store(bao).read(path) == Entry(None, 0)
    assert 'namespace %s' % ns in s.describe()
    # an unknown namespace is a configuration problem, reported as such
    with pytest.raises(StoreConfigError) as exc:
        vault_store(bao, namespace='no-such-ns').read(path)
    assert 'namespace not found' in str(exc.value)


def test_vault_missing_mount_is_a_config_error(bao):
    with pytest.raises(StoreConfigError) as exc:
        vault_store(bao, mount_point='nomount').read('a/b')
    assert 'mount_point' in str(exc.value)


def test_vault_bad_token_denied(bao):
    token = 'hvs.bogus-token-4242'
    log = Log()
    s = vault_store(bao, log, token=token)
    path = unique() + '/denied'
    with pytest.raises(StoreDenied) as exc:
        s.read(path)
    text = str(exc.value)
    assert 'read' in text and path in text and '403' in text and 'permission denied' in text
    assert_clean(exc, token, bao.root_token)
    assert len(log) == 1  # a denial is not retried
    with pytest.raises(StoreDenied) as exc:
        s.write(path, {'secret': SECRET}, 0)
    assert_clean(exc, token)


def test_vault_limited_token_denied_outside_its_policy(bao):
    prefix = unique()
    bao.put_policy('limited', ['secret/data/%s/*' % prefix])
    token = bao.create_token(['limited'])
    s = vault_store(bao, token=token)
    assert s.write(prefix + '/ok', {'secret': SECRET}, 0) == 1
    with pytest.raises(StoreDenied) as exc:
        s.write('other/' + prefix, {'secret': SECRET}, 0)
    assert_clean(exc, token)


def test_vault_paused_server_is_unavailable(bao):
    log = Log()
    s = vault_store(bao, log, timeout=1)
    path = unique() + '/pause'
    with bao.outage():
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as exc:
            s.read(path)
        assert time.monotonic() - start < 2.5  # a read timeout is not retried three times
        assert 'within 1s' in str(exc.value)
        with pytest.raises(StoreUnavailable) as exc:
            s.write(path, {'secret': SECRET}, 0)
        assert 'may or may not have been applied' in str(exc.value)
        assert_clean(exc, bao.root_token)
    assert [method for method, _path in log] == ['GET', 'POST']
    # the server is back
    assert vault_store(bao).read(unique()).version == 0


def test_vault_closed_port_is_unavailable_and_reads_retry():
    log = Log()
    token = 'hvs.closed-port-token'
    s = store_from_params({'backend': 'vault', 'url': 'http://127.0.0.1:%d' % free_port(), 'token': token, 'timeout': 1},
                          request_log=log)
    with pytest.raises(StoreUnavailable) as exc:
        s.read('tokenops/a/b')
    assert 'connection refused' in str(exc.value) and 'tokenops/a/b' in str(exc.value)
    assert_clean(exc, token)
    assert log == [('GET', '/v1/secret/data/tokenops/a/b')] * 3  # two retries for a read
    log.clear()
    with pytest.raises(StoreUnavailable):
        s.write('tokenops/a/b', {'secret': SECRET}, 0)
    assert log == [('POST', '/v1/secret/data/tokenops/a/b')]  # writes are never retried


def test_vault_sealed_is_unavailable():
    with OpenBaoServer() as sealed:
        sealed.api('PUT', 'sys/seal')
        log = Log()
        s = vault_store(sealed, log)
        with pytest.raises(StoreUnavailable) as exc:
            s.read('tokenops/a')
        assert '503' in str(exc.value) and 'sealed' in str(exc.value)
        assert_clean(exc, sealed.root_token)
        assert len(log) == 3  # 503 on a read is retried twice


def test_vault_tls_ca_cert_and_validate_certs(monkeypatch):
    monkeypatch.delenv('REQUESTS_CA_BUNDLE', raising=False)
    monkeypatch.delenv('CURL_CA_BUNDLE', raising=False)
    with OpenBaoServer(tls=True) as tls:
        path = unique() + '/tls'
        with pytest.raises(StoreUnavailable) as exc:  # the generated CA is not trusted by default
            vault_store(tls).read(path)
        assert 'TLS' in str(exc.value)
        assert vault_store(tls, ca_cert=tls.ca_path).write(path, {'secret': SECRET}, 0) == 1
        # REQUESTS_CA_BUNDLE must not override an explicit ca_cert
        monkeypatch.setenv('REQUESTS_CA_BUNDLE', os.path.join(os.path.dirname(tls.ca_path), 'vault-cert.pem'))
        assert vault_store(tls, ca_cert=tls.ca_path).read(path).version == 1
        monkeypatch.delenv('REQUESTS_CA_BUNDLE')
        with pytest.warns(Warning):  # urllib3's InsecureRequestWarning
            assert vault_store(tls, validate_certs=False).read(path).version == 1


# -- settings ----------------------------------------------------------------------------------
def test_env_fallbacks_through_argument_spec(monkeypatch, tmp_path, bao):
    monkeypatch.setenv('VAULT_ADDR', bao.url)
    monkeypatch.setenv('VAULT_TOKEN', bao.root_token)
    monkeypatch.setenv('VAULT_AUTH_METHOD', 'approle')
    monkeypatch.setenv('VAULT_ROLE_ID', 'role-from-env')
    monkeypatch.setenv('VAULT_SECRET_ID', 'secret-id-from-env')
    monkeypatch.setenv('VAULT_NAMESPACE', 'ns-from-env')
    monkeypatch.setenv('VAULT_CACERT', '/etc/ssl/ca-from-env.pem')
    monkeypatch.setenv('TOKENOPS_STORE_FILE', str(tmp_path / 'env.vault'))
    monkeypatch.setenv('ANSIBLE_VAULT_PASSWORD_FILE', str(tmp_path / 'pw'))

    result = ArgumentSpecValidator({'store': STORE_ARG_SPEC}).validate({'store': {'backend': 'vault'}})
    assert not result.error_messages
    p = result.validated_parameters['store']
    assert p['url'] == bao.url and p['token'] == bao.root_token and p['auth_method'] == 'approle'
    assert p['role_id'] == 'role-from-env' and p['secret_id'] == 'secret-id-from-env'
    assert p['namespace'] == 'ns-from-env' and p['ca_cert'] == '/etc/ssl/ca-from-env.pem'
    assert p['file_path'] == str(tmp_path / 'env.vault') and p['vault_password_file'] == str(tmp_path / 'pw')
    assert p['prefix'] == 'tokenops' and p['mount_point'] == 'secret' and p['approle_mount'] == 'approle'
    assert p['validate_certs'] is True and p['timeout'] == 10
    assert {bao.root_token, 'secret-id-from-env'} <= set(result._no_log_values)

    # an explicit value wins over the environment; `store` omitted entirely still gets defaults and env
    result = ArgumentSpecValidator({'store': STORE_ARG_SPEC}).validate({'store': {'token': 'explicit', 'vault_password': 'pw1'}})
    assert result.validated_parameters['store']['token'] == 'explicit'
    assert {'explicit', 'pw1'} <= set(result._no_log_values)
    result = ArgumentSpecValidator({'store': STORE_ARG_SPEC}).validate({})
    assert result.validated_parameters['store']['backend'] == 'file'
    assert result.validated_parameters['store']['url'] == bao.url

    # the env-resolved settings reach a real server
    monkeypatch.setenv('VAULT_AUTH_METHOD', 'token')
    monkeypatch.delenv('VAULT_NAMESPACE')
    monkeypatch.delenv('VAULT_CACERT')
    s = store_from_params(resolve_store_params({'backend': 'vault'}))
    path = unique() + '/env'
    assert s.write(path, {'secret': SECRET}, 0) == 1
    assert bao.kv_read(path) == {'secret': SECRET}


def test_the_file_store_password_comes_from_the_environment(tmp_path, monkeypatch):
    """TOKENOPS_VAULT_PASSWORD: the password need not be a module argument (arguments are written into the payload)."""
    for name in ('TOKENOPS_VAULT_PASSWORD_FILE', 'ANSIBLE_VAULT_PASSWORD_FILE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('TOKENOPS_VAULT_PASSWORD', 'pw-from-env')
    folder = tmp_path / 'store.vault'
    params = resolve_store_params({'file_path': str(folder), 'create_folder': True})
    assert params['vault_password'] == 'pw-from-env'
    with store_from_params(params) as s:
        assert s.write('a/b', {'secret': SECRET}, 0) == 1
    reader = store_file.FileStore(str(folder), vault_password='pw-from-env')
    assert reader.read('a/b').data == {'secret': SECRET}
    monkeypatch.setenv('TOKENOPS_VAULT_PASSWORD', '  ')      # blank: unset, as for every fallback
    assert resolve_store_params({})['vault_password'] is None


def test_file_path_default_and_choices():
    p = resolve_store_params({})
    assert p['backend'] == 'file'
    assert p['file_path'] == os.path.expanduser('~/.ansible/tokenops/store.vault')
    with pytest.raises(StoreConfigError):
        resolve_store_params({'backend': 'consul'})


@pytest.mark.parametrize('params, needle', [
    ({'backend': 'vault', 'token': 'tok-abc-123'}, 'store.url'),
    ({'backend': 'vault', 'url': 'http://127.0.0.1:1'}, 'store.token'),
    ({'backend': 'vault', 'url': 'ftp://127.0.0.1:1', 'token': 'tok-abc-123'}, 'http'),
    ({'backend': 'vault', 'url': 'http://127.0.0.1:1', 'auth_method': 'approle', 'role_id': 'r'}, 'secret_id'),
    ({'backend': 'vault', 'url': 'http://127.0.0.1:1', 'token': 'tok-abc-123', 'timeout': 0}, 'timeout'),
    ({'backend': 'vault', 'url': 'http://127.0.0.1:1', 'token': 'tok-abc-123', 'ca_cert': '/nonexistent/ca.pem'}, 'ca_cert'),
    ({'backend': 'file'}, 'vault_password'),
])
def test_config_errors_before_any_request(params, needle, tmp_path):
    log = Log()
    params = dict(params)
    if params['backend'] == 'file':
        params['file_path'] = str(tmp_path / 'sub' / 'store.vault')
    with pytest.raises(StoreConfigError) as exc:
        store_from_params(resolve_store_params(params), request_log=log)
    assert needle in str(exc.value)
    assert_clean(exc, 'tok-abc-123')
    assert log == []
    assert not (tmp_path / 'sub').exists()


def test_file_store_without_cryptography(monkeypatch, tmp_path):
    monkeypatch.setattr(store_file, 'HAS_CRYPTOGRAPHY', False)
    with pytest.raises(StoreConfigError) as exc:
        file_store(tmp_path)
    assert 'cryptography' in str(exc.value) and 'ansible_playbook_python' in str(exc.value)


def test_file_reads_what_ansible_vault_encrypt_wrote(tmp_path):
    """The other direction of the format check: ansible-vault's own encryption opens with our reader."""
    s = file_store(tmp_path)
    s.write('a/other', {'k': 'v'}, 0)
    plain = tmp_path / 'store' / 'tokens.vault' / 'a' / 'b.vault'
    plain.write_text(yaml.safe_dump({'path': 'a/b', 'version': 4, 'data': {'secret': SECRET}}))
    cli = os.path.join(os.path.dirname(sys.executable), 'ansible-vault')
    subprocess.run([cli, 'encrypt', '--vault-password-file', write_password_file(tmp_path), str(plain)],
                   capture_output=True, text=True, timeout=60, check=True)
    assert plain.read_text().startswith('$ANSIBLE_VAULT;1.1;AES256')
    entry = s.read('a/b')
    assert entry.version == 4 and entry.data == {'secret': SECRET}
    assert s.write('a/b', {'secret': 'next'}, 4) == 5
    assert s.list('a') == ['a/b', 'a/other']


def test_vault_format_rejects_a_wrong_password_and_tampering():
    text = store_file.vault_encrypt(b'entries: {}\n', b'right')
    assert store_file.vault_decrypt(text, b'right') == b'entries: {}\n'
    with pytest.raises(store_file.VaultFormatError):
        store_file.vault_decrypt(text, b'wrong')
    lines = text.splitlines()
    flipped = lines[2][:-1] + ('0' if lines[2][-1] != '0' else '1')
    with pytest.raises(store_file.VaultFormatError):
        store_file.vault_decrypt('\n'.join(lines[:2] + [flipped] + lines[3:]), b'right')


def test_path_for():
    assert path_for({}, 'das', 'https://Tenant.Styra.com/v1', 'ws-token') == 'tokenops/das/tenant.styra.com/ws-token'
    assert path_for({'prefix': 'ops/tok/'}, 'dpa', 'dpa.local:8124', 'r1') == 'ops/tok/dpa/dpa.local_8124/r1'
    assert path_for({'host': 'override:9'}, 'das', 'ignored', 'id') == 'tokenops/das/override_9/id'
    assert path_for({}, 'das', 'https://user:pw@h.example:8443', 'systems/s1/t') == 'tokenops/das/h.example_8443/systems/s1/t'
    assert path_for({}, 'op', 'https://[::1]:8443', 'g') == 'tokenops/op/__1_8443/g'
    for params, host, token_id in [({}, 'h', '../x'), ({}, 'h', 'a//b'), ({}, 'h', ''), ({}, '', 'x'),
                                   ({'prefix': 'a/../b'}, 'h', 'x'), ({'host': '..'}, 'h', 'x'), ({}, 'h', None)]:
        with pytest.raises(StoreConfigError):
            path_for(params, 'das', host, token_id)
    with pytest.raises(StoreConfigError):
        path_for({}, '', 'h', 'x')


def test_term_path_takes_the_store_path_and_either_host_form():
    products = ('das', 'dpa')
    store_path = path_for({}, 'das', 'https://127.0.0.1:36301', 'ci-deployer')
    assert store_path == 'tokenops/das/127.0.0.1_36301/ci-deployer'
    for term in (store_path, 'das/127.0.0.1:36301/ci-deployer', 'das/127.0.0.1_36301/ci-deployer',
                 'tokenops/das/127.0.0.1:36301/ci-deployer', '/das/127.0.0.1:36301/ci-deployer/'):
        assert term_path(term, 'tokenops', products) == store_path, term
    assert term_path('das/h:1/systems/s1/opa', 'ops/tok', products) == 'ops/tok/das/h_1/systems/s1/opa'
    assert term_path('das/h:1/app', '', products) == 'das/h_1/app'
    assert term_path('elsewhere/a:b/c', 'tokenops', products) == 'elsewhere/a:b/c'   # not a product path: as given
    with pytest.raises(StoreConfigError):
        term_path('das/../x', 'tokenops', products)


def test_entry_repr_hides_data():
    assert SECRET not in repr(Entry({'secret': SECRET}, 3))


# -- file specifics ----------------------------------------------------------------------------

def write_password_file(tmp_path, text=PASSWORD + '\n'):
    pw = tmp_path / 'vault-pass'
    pw.write_text(text)
    pw.chmod(0o600)
    return str(pw)


def test_file_ansible_vault_view_opens_it(tmp_path):
    s = file_store(tmp_path)
    path = 'tokenops/das/tenant/ws'
    s.write(path, {'secret': SECRET, 'rotation_count': 2, 'rotated_at': '2026-11-23T06:20:00Z'}, 0)
    entry_file = os.path.join(s.path, 'tokenops', 'das', 'tenant', 'ws.vault')
    raw = open(entry_file, 'rb').read()
    assert raw.startswith(b'$ANSIBLE_VAULT;1.1;AES256')
    assert SECRET.encode() not in raw
    cli = os.path.join(os.path.dirname(sys.executable), 'ansible-vault')
    out = subprocess.run([cli, 'view', '--vault-password-file', write_password_file(tmp_path), entry_file],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    doc = yaml.safe_load(out)
    data = {'secret': SECRET, 'rotation_count': 2, 'rotated_at': '2026-11-23T06:20:00Z'}
    assert doc == {'about': store_file.ENTRY_ABOUT, 'path': path, 'version': 1, 'data': data}
    assert stat.S_IMODE(os.stat(entry_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o700
    assert s.describe() == 'file ' + s.path


def test_file_read_of_absent_store_touches_nothing(tmp_path):
    s = file_store(tmp_path)
    assert s.read('a/b') == Entry(None, 0)
    assert s.list('') == []
    assert s.delete('a/b') is False
    assert os.listdir(str(tmp_path / 'store')) == []


def test_file_password_file_and_script(tmp_path):
    s = file_store(tmp_path)
    s.write('a/b', {'secret': SECRET}, 0)
    plain = store_from_params({'file_path': s.path, 'vault_password_file': write_password_file(tmp_path)})
    assert plain.read('a/b') == Entry({'secret': SECRET}, 1)
    script = tmp_path / 'pass.sh'
    script.write_text('#!/bin/sh\necho "%s"\n' % PASSWORD)
    script.chmod(0o700)
    scripted = store_from_params({'file_path': s.path, 'vault_password_file': str(script)})
    assert scripted.read('a/b').version == 1
    failing = tmp_path / 'fail.sh'
    failing.write_text('#!/bin/sh\necho "%s"\nexit 3\n' % PASSWORD)
    failing.chmod(0o700)
    with pytest.raises(StoreConfigError) as exc:
        store_from_params({'file_path': s.path, 'vault_password_file': str(failing)}).read('a/b')
    assert 'rc 3' in str(exc.value)
    assert_clean(exc, PASSWORD)
    with pytest.raises(StoreConfigError):
        store_from_params({'file_path': s.path, 'vault_password_file': str(tmp_path / 'missing')}).read('a/b')


def test_file_wrong_password_denied(tmp_path):
    file_store(tmp_path).write('a/b', {'secret': SECRET}, 0)
    wrong = file_store(tmp_path, vault_password='not-the-password')
    with pytest.raises(StoreDenied) as exc:
        wrong.read('a/b')
    assert 'decrypt' in str(exc.value)
    assert_clean(exc, 'not-the-password', PASSWORD)
    with pytest.raises(StoreDenied):
        wrong.write('a/c', {'secret': 'x'}, 0)
    assert file_store(tmp_path).list('') == ['a/b']


def test_file_refuses_a_plaintext_file(tmp_path):
    target = tmp_path / 'plain.yml'
    target.write_text('entries: {}\nimportant: true\n')
    s = store_from_params({'file_path': str(target), 'vault_password': PASSWORD})
    with pytest.raises(StoreError) as exc:
        s.write('a/b', {'secret': SECRET}, 0)
    assert 'not ansible-vault encrypted' in str(exc.value)
    assert target.read_text() == 'entries: {}\nimportant: true\n'


def _race_writer(file_path, barrier, results, n):
    s = store_from_params({'file_path': file_path, 'vault_password': PASSWORD})
    barrier.wait()
    try:
        results.put(('won', n, s.write('race/entry', {'secret': 'writer-%d' % n}, 0)))
    except StoreConflict:
        results.put(('conflict', n, None))
    except Exception as exc:  # pragma: no cover - reported to the parent
        results.put(('error', n, repr(exc)))


def test_file_concurrent_writers_exactly_one_wins(tmp_path):
    s = file_store(tmp_path)
    s.write('other/entry', {'k': 'v'}, 0)  # the file exists, so every writer must decrypt, modify, encrypt
    ctx = multiprocessing.get_context('fork')
    writers = 4
    barrier = ctx.Barrier(writers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race_writer, args=(s.path, barrier, results, n)) for n in range(writers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _proc in procs]
    for p in procs:
        p.join(timeout=30)
    assert sorted(o[0] for o in outcomes) == ['conflict'] * (writers - 1) + ['won'], outcomes
    winner = [o for o in outcomes if o[0] == 'won'][0]
    assert winner[2] == 1
    assert s.read('race/entry') == Entry({'secret': 'writer-%d' % winner[1]}, 1)
    assert s.read('other/entry') == Entry({'k': 'v'}, 1)  # no writer lost the other entries


def test_file_interrupted_write_leaves_old_file(tmp_path, monkeypatch):
    s = file_store(tmp_path)
    s.write('a/b', {'secret': 'old'}, 0)
    entry_file = os.path.join(s.path, 'a', 'b.vault')
    before = open(entry_file, 'rb').read()

    def boom(src, dst):
        raise OSError(errno.EIO, 'simulated crash during rename')

    monkeypatch.setattr(store_file.os, 'replace', boom)
    with pytest.raises(StoreUnavailable) as exc:
        s.write('a/b', {'secret': SECRET}, 1)
    assert_clean(exc)
    monkeypatch.undo()
    assert open(entry_file, 'rb').read() == before
    assert s.read('a/b') == Entry({'secret': 'old'}, 1)
    assert os.listdir(os.path.dirname(entry_file)) == ['b.vault']  # no temp file left
    assert s.write('a/b', {'secret': 'new'}, 1) == 2


def test_file_lock_held_too_long_is_unavailable(tmp_path):
    """A stuck lock holder makes the store unavailable after `timeout`, instead of hanging the job."""
    import fcntl
    s = store_file.FileStore(str(tmp_path / 'tokens.vault'), vault_password=PASSWORD, timeout=0.5)
    s.write('a/b', {'secret': SECRET}, 0)
    fd = os.open(s.lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)   # what a migration holds: every operation waits for it
        for attempt in (lambda: s.write('a/b', {'secret': 'next'}, 1), lambda: s.read('a/b')):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as exc:
                attempt()
            assert 0.4 < time.monotonic() - started < 5
            assert 'lock' in str(exc.value) and SECRET not in str(exc.value)
    finally:
        os.close(fd)
    assert s.write('a/b', {'secret': 'next'}, 1) == 2


def test_file_entry_lock_held_blocks_only_that_entry(tmp_path):
    """A writer stuck on one entry holds up the writers of that entry, and nobody else."""
    import fcntl
    s = store_file.FileStore(str(tmp_path / 'tokens.vault'), vault_password=PASSWORD, timeout=0.5)
    s.write('a/b', {'secret': SECRET}, 0)
    lock_files = os.listdir(s.locks)
    assert len(lock_files) == 1
    fd = os.open(os.path.join(s.locks, lock_files[0]), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StoreUnavailable) as exc:
            s.write('a/b', {'secret': 'next'}, 1)
        assert 'lock' in str(exc.value)
        assert s.read('a/b') == Entry({'secret': SECRET}, 1)     # readers take no entry lock
        assert s.write('a/c', {'secret': 'other'}, 0) == 1
    finally:
        os.close(fd)
    assert s.write('a/b', {'secret': 'next'}, 1) == 2
