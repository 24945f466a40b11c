# -*- coding: utf-8 -*-
# Copyright (c) tokenops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The embedded default store: one ansible-vault encrypted YAML file.

Plaintext (what `ansible-vault view FILE` shows)::

    entries:
      tokenops/das/tenant.example.com/ws-token:
        version: 3
        data: {secret: ..., fingerprint: ..., ...}

Every read-modify-write holds an exclusive fcntl.flock on `<file>.lock`, reads a shared one;
a write goes to a temporary file in the same folder (0600), is flushed and fsynced, renamed over
the file with os.replace, and the folder is fsynced. The per-entry `version` counter gives the
same check-and-set semantics as KV v2 (cas=0: the entry must not exist).

The file format is ansible-vault 1.1 (AES256): PBKDF2-HMAC-SHA256 with 10000 iterations derives
an AES-256-CTR key, an HMAC-SHA256 key and the counter from the password and a random salt. It is
written here with the `cryptography` package (a dependency of ansible-core) because ansible-core's
own VaultLib is controller code, and importing it inside a module payload breaks the module's
result serialisation. The tests check the format against the `ansible-vault` command both ways.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import subprocess
import tempfile
import time

import binascii
import hmac as _hmac

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.hmac import HMAC
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

from ansible.module_utils.common.yaml import HAS_YAML, yaml_dump, yaml_load

from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    Entry,
    Store,
    StoreConfigError,
    StoreConflict,
    StoreDenied,
    StoreError,
    StoreUnavailable,
    check_path,
    check_prefix,
)

NEEDS_CRYPTOGRAPHY = ('the file store needs the Python library cryptography (a dependency of ansible-core) on the Python that runs '
                      'the module; run it on the controller with ansible_connection=local and '
                      'ansible_python_interpreter={{ ansible_playbook_python }}')
VAULT_HEADER = "$ANSIBLE_VAULT;1.1;AES256"


class VaultFormatError(Exception):
    """The text is not ansible-vault, or the password does not open it."""


def _derive(password, salt):
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt, iterations=10000)
    key = kdf.derive(password)
    return key[:32], key[32:64], key[64:80]


def is_vault(text):
    return text.lstrip().startswith("$ANSIBLE_VAULT;")


def vault_encrypt(plaintext, password):
    """bytes -> ansible-vault 1.1 text, as `ansible-vault encrypt` writes it."""
    salt = os.urandom(32)
    key1, key2, iv = _derive(password, salt)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key1), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    signer = HMAC(key2, hashes.SHA256())
    signer.update(ciphertext)
    body = binascii.hexlify(b"\n".join([binascii.hexlify(salt), binascii.hexlify(signer.finalize()), binascii.hexlify(ciphertext)]))
    lines = [VAULT_HEADER] + [body[i:i + 80].decode("ascii") for i in range(0, len(body), 80)]
    return "\n".join(lines) + "\n"


def vault_decrypt(text, password):
    """ansible-vault 1.1/1.2 AES256 text -> bytes. VaultFormatError when it is not, or the password is wrong."""
    lines = text.strip().splitlines()
    header = lines[0].strip().split(";") if lines else []
    if len(header) < 3 or header[0] != "$ANSIBLE_VAULT" or header[1] not in ("1.1", "1.2") or header[2].strip() != "AES256":
        raise VaultFormatError("not an ansible-vault 1.1/1.2 AES256 file")
    try:
        salt, tag, ciphertext = binascii.unhexlify("".join(line.strip() for line in lines[1:])).split(b"\n", 2)
        salt, tag, ciphertext = binascii.unhexlify(salt), binascii.unhexlify(tag), binascii.unhexlify(ciphertext)
    except (ValueError, TypeError, binascii.Error):
        raise VaultFormatError("the vault body is malformed")
    key1, key2, iv = _derive(password, salt)
    verifier = HMAC(key2, hashes.SHA256())
    verifier.update(ciphertext)
    try:
        verifier.verify(tag)
    except InvalidSignature:
        raise VaultFormatError("HMAC verification failed")
    decryptor = Cipher(algorithms.AES(key1), modes.CTR(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise VaultFormatError("bad padding")


HEADER = '# tokenops.rotation secret store. entries.<path>.version is the check-and-set counter; do not edit while jobs run.\n'
PASSWORD_SCRIPT_TIMEOUT = 120


def _plain(value, where='data'):
    """A deep copy of value made of plain dict/list/str/int/float/bool/None (YAML-safe on every ansible-core)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreConfigError('%s: keys must be strings, got %s' % (where, type(key).__name__))
            out[str(key)] = _plain(item, '%s.%s' % (where, key))
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    raise StoreConfigError('%s: cannot store a value of type %s' % (where, type(value).__name__))


class FileStore(Store):
    kind = 'file'

    def __init__(self, file_path, vault_password=None, vault_password_file=None, request_log=None, timeout=10):
        if not HAS_CRYPTOGRAPHY:
            raise StoreConfigError(NEEDS_CRYPTOGRAPHY)
        if not HAS_YAML:
            raise StoreConfigError('the file store needs PyYAML on the host that runs the module')
        if not file_path or not str(file_path).strip():
            raise StoreConfigError('store.file_path (or TOKENOPS_STORE_FILE) is required for the file store')
        if not vault_password and not vault_password_file:
            raise StoreConfigError('the file store needs store.vault_password or store.vault_password_file '
                                   '(or ANSIBLE_VAULT_PASSWORD_FILE)')
        self.path = os.path.abspath(os.path.expanduser(str(file_path).strip()))
        if os.path.isdir(self.path):
            raise StoreConfigError('store.file_path %s is a directory' % self.path)
        self.folder = os.path.dirname(self.path)
        self.lock_path = self.path + '.lock'
        self._password = str(vault_password).encode('utf-8') if vault_password else None
        self._password_file = os.path.abspath(os.path.expanduser(str(vault_password_file))) if vault_password_file else None
        self._request_log = request_log
        self.timeout = float(timeout)

    @classmethod
    def from_params(cls, params, request_log=None):
        return cls(params.get('file_path'), vault_password=params.get('vault_password'),
                   vault_password_file=params.get('vault_password_file'), request_log=request_log,
                   timeout=params.get('timeout') or 10)

    def describe(self):
        return 'file %s' % self.path

    # -- password and crypto -----------------------------------------------------------------

    def _load_password(self):
        if self._password is not None:
            return self._password
        path = self._password_file
        if not os.path.isfile(path):
            raise StoreConfigError('store.vault_password_file %s does not exist or is not a file' % path)
        if os.access(path, os.X_OK):
            # like ansible: an executable password file is a script printing the password
            try:
                proc = subprocess.run([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      timeout=PASSWORD_SCRIPT_TIMEOUT, check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                raise StoreConfigError('cannot run the vault password script %s (%s)' % (path, exc.__class__.__name__))
            if proc.returncode != 0:
                raise StoreConfigError('the vault password script %s exited with rc %d' % (path, proc.returncode))
            password = proc.stdout.strip(b'\r\n')
            source = 'script'
        else:
            try:
                with open(path, 'rb') as handle:
                    password = handle.read().strip()
            except OSError as exc:
                raise StoreConfigError('cannot read store.vault_password_file %s (%s)' % (path, os.strerror(exc.errno or 0)))
            source = 'file'
        if not password:
            raise StoreConfigError('the vault password %s %s gave an empty password' % (source, path))
        self._password = password
        return password

    def _secret(self):
        password = self._load_password()
        return password.encode('utf-8') if not isinstance(password, bytes) else password

    def _decode(self, raw):
        if not raw.strip():
            return {}
        if isinstance(raw, bytes):
            raw = raw.decode('utf-8', 'replace')
        if not is_vault(raw):
            raise StoreError('file store %s: the file is not ansible-vault encrypted; refusing to use it' % self.path)
        try:
            plaintext = vault_decrypt(raw, self._secret())
        except VaultFormatError:
            raise StoreDenied('file store %s: cannot decrypt the file with the given vault password '
                              '(wrong password, or the file was encrypted with another one)' % self.path)
        try:
            document = yaml_load(plaintext.decode('utf-8'))
        except Exception as exc:  # yaml.YAMLError, UnicodeDecodeError
            raise StoreError('file store %s: the decrypted file is not valid YAML (%s)' % (self.path, exc.__class__.__name__))
        if document is None:
            return {}
        entries = document.get('entries') if isinstance(document, dict) else None
        if entries is None and isinstance(document, dict) and not document:
            return {}
        if not isinstance(entries, dict):
            raise StoreError('file store %s: the decrypted file has no "entries" mapping' % self.path)
        for key, value in entries.items():
            if not isinstance(value, dict) or not isinstance(value.get('version'), int) or not isinstance(value.get('data'), dict):
                raise StoreError('file store %s: entry %r is malformed (needs version: int and data: mapping)' % (self.path, key))
        return entries

    def _encode(self, entries):
        text = HEADER + yaml_dump({'entries': entries}, default_flow_style=False, allow_unicode=True)
        return vault_encrypt(text.encode('utf-8'), self._secret()).encode('ascii')

    # -- disk --------------------------------------------------------------------------------

    def _os_error(self, op, exc):
        reason = os.strerror(exc.errno) if getattr(exc, 'errno', None) else exc.__class__.__name__
        cls = StoreDenied if isinstance(exc, PermissionError) else StoreUnavailable
        return cls('file store %s: %s failed: %s' % (self.path, op, reason))

    @contextlib.contextmanager
    def _lock(self, exclusive, op):
        if exclusive:
            if not os.path.isdir(self.folder):
                try:
                    os.makedirs(self.folder, mode=0o700)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise self._os_error(op, exc)
            flags = os.O_RDWR | os.O_CREAT
        else:
            if not os.path.isdir(self.folder):
                yield False
                return
            flags = os.O_RDWR | os.O_CREAT
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except OSError as exc:
            read_only = isinstance(exc, PermissionError) or exc.errno == errno.EROFS
            if exclusive or not read_only:
                raise self._os_error(op + ' (lock)', exc)
            # a reader in a folder it cannot write: os.replace makes every read see a whole file anyway
            try:
                fd = os.open(self.lock_path, os.O_RDONLY)
            except OSError:
                yield True
                return
        try:
            self._acquire(fd, exclusive, op)
            yield True
        finally:
            os.close(fd)  # closing releases the flock

    def _acquire(self, fd, exclusive, op):
        """Wait for the lock at most `timeout` seconds: a stuck holder must not hang every job."""
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, mode)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise self._os_error(op + ' (lock)', exc)
            if time.monotonic() >= deadline:
                raise StoreUnavailable('file store %s: %s failed: another process has held the lock %s for more than %s s'
                                       % (self.path, op, self.lock_path, self.timeout))
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _read_raw(self, op):
        try:
            with open(self.path, 'rb') as handle:
                return handle.read()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return b''
            raise self._os_error(op, exc)

    def _load(self, op):
        return self._decode(self._read_raw(op))

    def _save(self, entries, op):
        blob = self._encode(entries)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.path), suffix='.tmp', dir=self.folder)
            with os.fdopen(fd, 'wb') as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            tmp = None
            self._fsync_folder()
        except OSError as exc:
            raise self._os_error(op, exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _fsync_folder(self):
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _log(self, method, path):
        if self._request_log is not None:
            self._request_log(method, path)

    # -- the interface -----------------------------------------------------------------------

    def read(self, path):
        path = check_path(path)
        self._log('GET', path)
        with self._lock(False, 'read %s' % path):
            entries = self._load('read %s' % path)
        item = entries.get(path)
        if item is None:
            return Entry(None, 0)
        return Entry(item['data'], item['version'])

    def write(self, path, data, cas):
        path = check_path(path)
        if not isinstance(data, dict):
            raise StoreConfigError('file store %s: write %s: data must be a dict' % (self.path, path))
        if isinstance(cas, bool) or not isinstance(cas, int) or cas < 0:
            raise StoreConfigError('file store %s: write %s: cas must be an integer >= 0' % (self.path, path))
        data = _plain(data)
        self._log('POST', path)
        op = 'write %s' % path
        with self._lock(True, op):
            entries = self._load(op)
            current = entries.get(path)
            version = current['version'] if current else 0
            if version != cas:
                raise StoreConflict('file store %s: write %s: the entry changed since it was read (expected version %d, found %d)'
                                    % (self.path, path, cas, version))
            entries[path] = {'version': version + 1, 'data': data}
            self._save(entries, op)
        return version + 1

    def delete(self, path):
        path = check_path(path)
        self._log('DELETE', path)
        op = 'delete %s' % path
        if not os.path.exists(self.path):
            return False
        with self._lock(True, op):
            entries = self._load(op)
            if path not in entries:
                return False
            del entries[path]
            self._save(entries, op)
        return True

    def list(self, prefix):
        prefix = check_prefix(prefix)
        self._log('LIST', prefix)
        with self._lock(False, 'list %s' % (prefix or '/')):
            entries = self._load('list %s' % (prefix or '/'))
        if not prefix:
            return sorted(entries)
        return sorted(key for key in entries if key.startswith(prefix + '/'))
