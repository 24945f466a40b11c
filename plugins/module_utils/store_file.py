# -*- coding: utf-8 -*-
# Copyright (c) tokenops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The embedded default store: a folder with one ansible-vault encrypted file per entry.

Layout, under `file_path` (what `ansible-vault view FILE` opens is any `*.vault` file)::

    <file_path>/                                    the store (mode 0700)
      tokenops/das/tenant.example.com/ws-token.vault
      tokenops/das/tenant.example.com/systems/s1/opa.vault
      .locks/<sha256 of the entry path>.lock        one lock per entry, for its writers
      .keyring                                      the key cache (see below)
    <file_path>.lock                                the store lock (see below)

An entry file decrypts to a JSON document (which is YAML too) ``{"about": ..., "path": <entry path>,
"version": N, "data": {...}}``; the per-entry `version` gives the same check-and-set as KV v2
(cas=0: the entry must not exist). A
write holds the entry's lock (fcntl.flock), goes to a temporary file in the entry's folder (0600),
is flushed and fsynced, renamed over the entry file with os.replace, and the folder is fsynced.
Readers take no entry lock: a rename shows them the old file or the new one, never a mix.
So a write costs the same with 10 entries or 10,000, and writers of different entries (threads
or processes) never wait for each other.

Every operation holds the store lock `<file_path>.lock` shared; only the migration of a store
in the earlier single-file format takes it exclusively, so nobody sees the store half-migrated.

Earlier versions kept every entry in one file at `file_path` (``{entries: {<path>: {version, data}}}``).
Such a store is read as it is; the first write turns it into the folder: the entries are written
to a temporary folder beside it, the file is moved aside to `<file_path>.migrating`, the folder is
renamed to `file_path`, and the file is kept as `<file_path>.single-file-<UTC time>`. A migration
that was interrupted is finished by the next operation that writes (readers read the moved-aside
file meanwhile); no entry is lost at any point.

The file format is ansible-vault 1.1 (AES256): PBKDF2-HMAC-SHA256 with 10000 iterations derives
an AES-256-CTR key, an HMAC-SHA256 key and the counter from the password and a random salt. It is
written here with the `cryptography` package (a dependency of ansible-core) because ansible-core's
own VaultLib is controller code, and importing it inside a module payload breaks the module's
result serialisation. The tests check the format against the `ansible-vault` command both ways.

The key derivation (about 7 ms of CPU) dominates the cost of an entry. Every write uses a fresh
random salt: the counter of AES-CTR comes from the salt, so two different plaintexts under one salt
would share a keystream. Derived keys are cached per salt, so a file read or written once in a run
is opened again without deriving (the check-and-set read of every write is such a re-read); at the
end of a run the keys of the entry files are kept in `<file_path>/.keyring` (ansible-vault, same
password), so the next run opens every entry with one derivation. Past a few writes, a helper
process derives the keys of fresh salts ahead of need, off the GIL of the module's threads.
The key cache holds its keys as one table (KeyTable) and is written and read a slice at a time: at
10,000 entries it is a file of megabytes that every module of a job opens.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import contextlib
import datetime
import errno
import fcntl
import hashlib
import itertools
import json
import os
import queue
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.hmac import HMAC
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

from ansible.module_utils.common.yaml import HAS_YAML, yaml_load

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
ENTRY_SUFFIX = '.vault'
LOCKS = '.locks'
MAX_SEGMENT_BYTES = 255 - len(ENTRY_SUFFIX)
# A migration of a large single-file store takes a while; it cannot be left behind by a dead
# process (an flock dies with its holder), so waiting for it long is safe.
MIGRATION_WAIT = 600.0
MIGRATION_THREADS = 8
KEYRING = '.keyring'


class VaultFormatError(Exception):
    """The text is not ansible-vault, or the password does not open it."""


def _derive(password, salt):
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt, iterations=10000)
    key = kdf.derive(password)
    return key[:32], key[32:64], key[64:80]


def is_vault(text):
    return text.lstrip().startswith("$ANSIBLE_VAULT;")


# Files of megabytes (the key cache of a large store) are written and read a slice at a time: ansible-vault's format
# hex-encodes twice, and whole copies of the text would be several times the file in every module of a job.
_SLICE_LINES = 2048                 # 80-character lines of the file per slice
_SLICE = 80 * _SLICE_LINES


def _seal_chunks(plaintext, salt, keys):
    """ansible-vault 1.1 text (bytes slices), as `ansible-vault encrypt` writes it: the header, lines of 80 hex digits."""
    key1, key2, iv = keys
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key1), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    signer = HMAC(key2, hashes.SHA256())
    signer.update(ciphertext)
    inner = [binascii.hexlify(salt) + b"\n" + binascii.hexlify(signer.finalize()) + b"\n"]
    view = memoryview(ciphertext)
    step = _SLICE // 4        # ciphertext bytes per slice of the file (hex of hex: four digits a byte)
    inner.extend(view[i:i + step] for i in range(0, len(ciphertext), step))
    yield VAULT_HEADER.encode("ascii") + b"\n"
    pending = b""
    for index, piece in enumerate(inner):
        pending += piece if index == 0 else binascii.hexlify(piece)
        whole = len(pending) - len(pending) % 40 if index < len(inner) - 1 else len(pending)
        body = binascii.hexlify(pending[:whole])
        pending = pending[whole:]
        if body:
            yield b"\n".join(body[i:i + 80] for i in range(0, len(body), 80)) + b"\n"


def _seal(plaintext, salt, keys):
    return b"".join(_seal_chunks(plaintext, salt, keys)).decode("ascii")


_WHITESPACE = b" \t\r\n\v\f"


def _check_header(line):
    header = line.strip().split(";")
    if len(header) < 3 or header[0] != "$ANSIBLE_VAULT" or header[1] not in ("1.1", "1.2") or header[2].strip() != "AES256":
        raise VaultFormatError("not an ansible-vault 1.1/1.2 AES256 file")


def _parse(text):
    """ansible-vault 1.1/1.2 AES256 text -> (salt, tag, ciphertext)."""
    lines = text.strip().splitlines()
    _check_header(lines[0] if lines else "")
    try:
        salt, tag, ciphertext = binascii.unhexlify("".join(line.strip() for line in lines[1:])).split(b"\n", 2)
        return binascii.unhexlify(salt), binascii.unhexlify(tag), binascii.unhexlify(ciphertext)
    except (ValueError, TypeError, binascii.Error):
        raise VaultFormatError("the vault body is malformed")


def _open(salt, tag, ciphertext, keys):
    key1, key2, iv = keys
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


def _open_file(handle, keys_of):
    """The plaintext (a bytearray) of an ansible-vault 1.1/1.2 AES256 file, read a slice at a time.

    keys_of(salt) gives the keys to try. VaultFormatError when it is not such a file or the keys do not open it.
    """
    first = handle.readline(4096)
    while first and not first.strip():
        first = handle.readline(4096)
    _check_header(first.decode("ascii", "replace"))

    def inner():     # the outer hex layer, decoded slice by slice
        carry = b""
        while True:
            piece = handle.read(_SLICE)
            if not piece:
                break
            piece = carry + piece.translate(None, _WHITESPACE)
            whole = len(piece) - len(piece) % 2
            carry = piece[whole:]
            if whole:
                yield binascii.unhexlify(piece[:whole])
        if carry:
            raise ValueError("odd number of hex digits")

    try:
        slices = inner()
        pending, fields = b"", []
        for piece in slices:
            pending += piece
            while len(fields) < 2 and b"\n" in pending:
                field, pending = pending.split(b"\n", 1)
                fields.append(binascii.unhexlify(field))
            if len(fields) == 2:
                break
        if len(fields) < 2:
            raise ValueError("no salt and tag")
        salt, tag = fields
        key1, key2, iv = keys_of(salt)
        verifier = HMAC(key2, hashes.SHA256())
        decryptor = Cipher(algorithms.AES(key1), modes.CTR(iv)).decryptor()
        plain, carry = bytearray(), b""
        for piece in itertools.chain([pending], slices):     # the hex of the ciphertext
            piece = carry + piece
            whole = len(piece) - len(piece) % 2
            carry = piece[whole:]
            ciphertext = binascii.unhexlify(piece[:whole])
            verifier.update(ciphertext)
            plain += decryptor.update(ciphertext)
        if carry:
            raise ValueError("odd number of hex digits")
    except (ValueError, TypeError, binascii.Error):
        raise VaultFormatError("the vault body is malformed")
    try:
        verifier.verify(tag)
    except InvalidSignature:
        raise VaultFormatError("HMAC verification failed")
    # PKCS#7, checked in place (cryptography's unpadder would copy the plaintext twice).
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= 16 or len(plain) % 16 or plain[-pad:] != bytes([pad]) * pad:
        raise VaultFormatError("bad padding")
    del plain[-pad:]
    return plain


def vault_encrypt(plaintext, password):
    """bytes -> ansible-vault 1.1 text, as `ansible-vault encrypt` writes it (a fresh random salt)."""
    salt = os.urandom(32)
    return _seal(plaintext, salt, _derive(password, salt))


def vault_decrypt(text, password):
    """ansible-vault 1.1/1.2 AES256 text -> bytes. VaultFormatError when it is not, or the password is wrong."""
    salt, tag, ciphertext = _parse(text)
    return _open(salt, tag, ciphertext, _derive(password, salt))


# The helper of KeyFactory: fresh salts and their keys, one per byte asked for on stdin.
# hashlib's PBKDF2 is OpenSSL's, as cryptography's is: the same keys (the module checks the helper's first pair),
# in a process that does not load cryptography (half the memory; a job runs one per module).
_KEY_HELPER = r"""
import hashlib, os, sys
source, sink = sys.stdin.buffer, sys.stdout.buffer
password = source.read(int.from_bytes(source.read(4), "big"))
while source.read(1):
    salt = os.urandom(32)
    sink.write(salt + hashlib.pbkdf2_hmac("sha256", password, salt, 10000, 80))
    sink.flush()
"""


class KeyFactory:
    """Keys for fresh salts, derived ahead of need by a helper process.

    A derivation is CPU work that holds the GIL of the module's process for its whole length;
    in a helper it runs on another core while the module's threads wait for HTTP answers and
    fsyncs. A writer that finds no derived pair ready derives its own, so both cores work.
    Every pair is taken once (a salt is never used for two files). The helper reads the password
    from a pipe, never from its command line or environment, and ends when the pipe closes.
    """

    PAIR = 32 + 80

    def __init__(self, password, depth=4):
        self._pid = os.getpid()
        self._ready = queue.Queue()
        self._write_lock = threading.Lock()
        self._proc = subprocess.Popen([sys.executable, '-I', '-S', '-c', _KEY_HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, close_fds=True)
        self._proc.stdin.write(len(password).to_bytes(4, 'big') + password + b'\x01' * depth)
        self._proc.stdin.flush()
        reader = threading.Thread(target=self._read, name='tokenops-key-factory')
        reader.daemon = True
        reader.start()

    def _read(self):
        stream = self._proc.stdout
        while True:
            pair = stream.read(self.PAIR)
            if not pair or len(pair) < self.PAIR:
                return
            keys = pair[32:]
            self._ready.put((pair[:32], (keys[:32], keys[32:64], keys[64:80])))

    def take(self):
        """A (salt, keys) pair nobody else gets, or None when none is ready."""
        if os.getpid() != self._pid:   # a forked child shares the helper's pipes: it must not read them
            return None
        try:
            pair = self._ready.get_nowait()
        except queue.Empty:
            return None
        try:
            with self._write_lock:
                self._proc.stdin.write(b'\x01')
                self._proc.stdin.flush()
        except (OSError, ValueError):
            pass
        return pair

    def close(self):
        if os.getpid() != self._pid:
            return
        try:
            self._proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


class KeyTable:
    """The keys of many salts in one bytes object, records sorted by salt (32 bytes of salt, then 80 of keys).

    The key cache of a store holds the keys of every entry file: as a dict of tuples, 10,000 entries
    are some 30,000 objects in every module process that opens the store; here they are one object,
    and a lookup is a binary search.
    """

    SALT = 32
    RECORD = SALT + 80

    def __init__(self, records=b''):
        if len(records) % self.RECORD:
            raise ValueError('a key table is made of %d-byte records' % self.RECORD)
        self._records = bytes(records)
        self._count = len(records) // self.RECORD

    @classmethod
    def of(cls, keys_by_salt):
        """From (salt, (key1, key2, iv)) pairs; salts of another length than ansible-vault's 32 bytes are left out."""
        return cls(b''.join(salt + b''.join(keys) for salt, keys in sorted(keys_by_salt)
                            if len(salt) == cls.SALT and sum(len(k) for k in keys) == cls.RECORD - cls.SALT))

    def __len__(self):
        return self._count

    def get(self, salt):
        if len(salt) != self.SALT:
            return None
        records, size = self._records, self.RECORD
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            start = middle * size
            found = records[start:start + self.SALT]
            if found == salt:
                keys = records[start + self.SALT:start + size]
                return keys[:32], keys[32:64], keys[64:80]
            if found < salt:
                low = middle + 1
            else:
                high = middle
        return None

    @property
    def records(self):
        return self._records


class VaultKeys:
    """ansible-vault encryption with one password, deriving the keys of a salt once.

    encrypt() always draws a new salt (and so derives once per call); decrypt() reuses the keys of
    a salt it has seen (every file this object wrote or read before) or was given by adopt() (the
    store's key cache). Keys that do not open a file are not trusted: the password decides then.
    """

    # After this many writes in one run, derive ahead in a helper process (a single write is not worth one).
    FACTORY_AFTER = 8

    def __init__(self, password_source, factory_after=FACTORY_AFTER):
        self._password_source = password_source
        self._keys = {}          # salts this run derived or wrote
        self._tables = []        # KeyTables adopted from the key cache, looked up after _keys
        self._derived = set()    # salts whose keys this object (or its helper) derived from the password
        self.derivations = 0
        self.on_miss = None      # called once, at the first salt without keys (loads the key cache)
        self._factory_after = factory_after
        self._encrypted = 0
        self._factory = None
        self._factory_lock = threading.Lock()

    def _derive(self, salt):
        keys = _derive(self._password_source(), salt)
        self.derivations += 1
        self._keys[salt] = keys
        self._derived.add(salt)
        return keys

    def _new_file_keys(self):
        """A fresh salt and its keys: from the helper when it has a pair ready, else derived here."""
        pair = self._fresh_pair()
        if pair is None:
            salt = os.urandom(32)
            return salt, self._derive(salt)
        salt, keys = pair
        self._keys[salt] = keys
        self._derived.add(salt)
        return salt, keys

    def encrypt(self, plaintext):
        return _seal(plaintext, *self._new_file_keys())

    def encrypt_chunks(self, plaintext):
        """(salt, the ansible-vault text as bytes slices) for a large file."""
        salt, keys = self._new_file_keys()
        return salt, _seal_chunks(plaintext, salt, keys)

    def open_file(self, handle):
        """(salt, plaintext) of a large file read a slice at a time; keys this object holds are tried first."""
        found = []

        def keys_of(salt):
            found.append(salt)
            keys = self.keys(salt)
            return keys if keys is not None else self._derive(salt)
        try:
            plain = _open_file(handle, keys_of)
        except VaultFormatError:
            if not found or found[0] in self._derived:
                raise
            handle.seek(0)      # held keys that do not open it: the password decides
            plain = _open_file(handle, self._derive)
        return found[0], plain

    def _fresh_pair(self):
        with self._factory_lock:
            self._encrypted += 1
            if self._factory is None and self._factory_after is not None and self._encrypted > self._factory_after:
                self._factory_after = None   # one attempt per run
                self._factory = self._start_factory()
            factory = self._factory
        return factory.take() if factory is not None else None

    def _start_factory(self):
        password = self._password_source()
        try:
            factory = KeyFactory(password)
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
        # A pair it made must open with the password, or none of its pairs is used.
        check = None
        deadline = time.monotonic() + 30
        while check is None and time.monotonic() < deadline:
            check = factory.take()
            if check is None:
                time.sleep(0.005)
        if check is None or _derive(password, check[0]) != check[1]:
            factory.close()
            return None
        self.derivations += 1
        return factory

    def close(self):
        with self._factory_lock:
            factory, self._factory = self._factory, None
        if factory is not None:
            factory.close()

    def decrypt(self, text):
        salt, tag, ciphertext = _parse(text)
        keys = self.keys(salt)
        if keys is None and self.on_miss is not None:
            on_miss, self.on_miss = self.on_miss, None
            on_miss()
            keys = self.keys(salt)
        if keys is not None:
            try:
                return _open(salt, tag, ciphertext, keys)
            except VaultFormatError:
                if salt in self._derived:
                    raise
        return _open(salt, tag, ciphertext, self._derive(salt))

    def adopt(self, table):
        """Keys to try before deriving (a KeyTable); keys this object already holds come first."""
        self._tables.append(table)

    def keys(self, salt):
        keys = self._keys.get(salt)
        if keys is None:
            for table in self._tables:
                keys = table.get(salt)
                if keys is not None:
                    break
        return keys

    @property
    def derived(self):
        return set(self._derived)


def salt_of(raw):
    """The salt of an ansible-vault text from its first bytes; None when they are not ansible-vault."""
    lines = raw[:512].decode('ascii', 'replace').splitlines()   # the salt is in the first lines of the body
    if not lines or not lines[0].startswith('$ANSIBLE_VAULT;'):
        return None
    body = ''.join(line.strip() for line in lines[1:])
    try:
        decoded = binascii.unhexlify(body[:len(body) - len(body) % 2])
        if b'\n' not in decoded:
            return None
        return binascii.unhexlify(decoded.split(b'\n', 1)[0])
    except (ValueError, TypeError, binascii.Error):
        return None


# What every entry file says about itself (ansible-vault view shows it).
ENTRY_ABOUT = 'tokenops.rotation store entry; version is its check-and-set counter: do not edit it while jobs run'
SINGLE_FILE_HEADER = '# tokenops.rotation secret store. entries.<path>.version is the check-and-set counter; do not edit while jobs run.\n'
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


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderSync:
    """The fsync of a folder after a rename into it, shared by the writers that renamed meanwhile.

    A folder's fsync makes every rename done in it before the fsync began durable, so writers
    that renamed while another's fsync was running need only the next one (group commit): with
    a thread per token writing into one host's folder, the disk sees one folder fsync per batch.
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._folders = {}   # folder -> [renames counted, renames made durable, an fsync running]

    def rename(self, source, target):
        folder = os.path.dirname(target)
        os.replace(source, target)
        with self._changed:
            state = self._folders.setdefault(folder, [0, 0, False])
            state[0] += 1
            ticket = state[0]
            while state[1] < ticket:
                if state[2]:
                    self._changed.wait()
                    continue
                state[2] = True
                covered = state[0]        # every rename counted so far happened before this fsync begins
                self._changed.release()
                try:
                    _fsync_dir(folder)
                finally:
                    self._changed.acquire()
                    state[2] = False
                    self._changed.notify_all()
                state[1] = max(state[1], covered)


class FileStore(Store):
    kind = 'file'

    def __init__(self, file_path, vault_password=None, vault_password_file=None, request_log=None, timeout=10,
                 create_folder=False):
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
        self.folder = os.path.dirname(self.path)
        self.create_folder = bool(create_folder)
        if not os.path.isdir(self.folder):
            if os.path.lexists(self.folder):
                raise StoreConfigError('store.file_path %s: %s is not a folder' % (self.path, self.folder))
            if not self.create_folder:
                # A volume that failed to mount must not turn into a new, empty store.
                raise StoreConfigError('store.file_path %s: the folder %s does not exist. Create it (in a container, on a '
                                       'persistent volume), or set store.create_folder: true to have it created'
                                       % (self.path, self.folder))
        self.lock_path = self.path + '.lock'
        self.moving_path = self.path + '.migrating'
        self.locks = os.path.join(self.path, LOCKS)
        self._password = str(vault_password).encode('utf-8') if vault_password else None
        self._password_file = os.path.abspath(os.path.expanduser(str(vault_password_file))) if vault_password_file else None
        self._password_lock = threading.Lock()
        self._password_checked = False
        self._check_lock = threading.Lock()
        self._vault = VaultKeys(self._secret)
        self._vault.on_miss = self._load_keyring
        self._keyring_salt = None
        self._request_log = request_log
        self.timeout = float(timeout)
        self._migration_lock = threading.Lock()
        self._folder_sync = FolderSync()
        self._single_file_cache = None

    @classmethod
    def from_params(cls, params, request_log=None):
        return cls(params.get('file_path'), vault_password=params.get('vault_password'),
                   vault_password_file=params.get('vault_password_file'), request_log=request_log,
                   timeout=params.get('timeout') or 10, create_folder=params.get('create_folder'))

    def describe(self):
        return 'file %s' % self.path

    @property
    def derivations(self):
        """How many key derivations this store made (the benchmark's profile shows it)."""
        return self._vault.derivations

    # -- password ----------------------------------------------------------------------------

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
        with self._password_lock:  # a password script runs once, not once per thread
            return self._load_password()

    def _decrypt(self, raw, where, check=False):
        if isinstance(raw, bytes):
            raw = raw.decode('utf-8', 'replace')
        if not is_vault(raw):
            raise StoreError('file store %s: %s is not ansible-vault encrypted; refusing to use it' % (self.path, where))
        try:
            plaintext = self._vault.decrypt(raw)
        except VaultFormatError:
            raise StoreDenied('file store %s: cannot decrypt %s with the given vault password '
                              '(wrong password, or it was encrypted with another one)%s'
                              % (self.path, where, '; nothing was written' if check else ''))
        try:
            text = plaintext.decode('utf-8')
            try:
                return json.loads(text)      # what this store writes: JSON (which is YAML too), parsed 50 times faster
            except ValueError:
                return yaml_load(text)       # the single file of earlier versions, or an entry a person edited
        except Exception as exc:  # yaml.YAMLError, UnicodeDecodeError
            raise StoreError('file store %s: %s does not decrypt to valid YAML (%s)' % (self.path, where, exc.__class__.__name__))

    # -- errors and logging ------------------------------------------------------------------

    def _os_error(self, op, exc):
        reason = os.strerror(exc.errno) if getattr(exc, 'errno', None) else exc.__class__.__name__
        cls = StoreDenied if isinstance(exc, PermissionError) else StoreUnavailable
        return cls('file store %s: %s failed: %s' % (self.path, op, reason))

    def _log(self, method, path):
        if self._request_log is not None:
            self._request_log(method, path)

    # -- locks -------------------------------------------------------------------------------

    def _acquire(self, fd, exclusive, op, lock_path, timeout=None, migrating=None):
        """Wait for the lock at most `timeout` seconds: a stuck holder must not hang every job.

        migrating(), asked once when the lock is taken, says whether a migration holds it: that
        ends by itself (an flock dies with its holder), so it is waited for up to MIGRATION_WAIT.
        """
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, mode)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise self._os_error(op + ' (lock)', exc)
            if migrating is not None:
                if migrating():
                    timeout = max(timeout, MIGRATION_WAIT)
                    deadline = time.monotonic() + timeout
                migrating = None
            if time.monotonic() >= deadline:
                raise StoreUnavailable('file store %s: %s failed: another process has held the lock %s for more than %s s'
                                       % (self.path, op, lock_path, timeout))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @contextlib.contextmanager
    def _store_lock(self, op, exclusive=False, write=False, timeout=None):
        """The store lock, shared by every operation (exclusive: the migration). Yields the layout.

        The layout is "folder", "single" (the earlier single file), "moving" (a migration was
        interrupted after the file was moved aside) or "none" (nothing written yet).
        """
        if not os.path.isdir(self.folder):
            if not write:
                yield 'none'
                return
            try:
                os.makedirs(self.folder, mode=0o700)  # only with create_folder: __init__ refused otherwise
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise self._os_error(op, exc)
        fd = None
        if not (write or exclusive):
            # A reader does not create the lock: without one there is no single file a migration
            # could move under it (every version made the lock with the store), so a read touches nothing.
            for flags in (os.O_RDWR, os.O_RDONLY):   # read-only: a folder the reader cannot write
                try:
                    fd = os.open(self.lock_path, flags)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
                        raise self._os_error(op + ' (lock)', exc)
                    if exc.errno == errno.ENOENT:
                        break
            if fd is None:
                layout = self._layout(op)
                if layout in ('folder', 'none'):
                    yield layout
                    return
        if fd is None:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                if write or exclusive or not (isinstance(exc, PermissionError) or exc.errno == errno.EROFS):
                    raise self._os_error(op + ' (lock)', exc)
                yield self._layout(op)   # a reader of a folder it cannot write: nobody migrates there
                return
        try:
            if not exclusive:
                with self._migration_lock:   # a migration by this run's other thread: wait for it, whatever it takes
                    pass
            self._acquire(fd, exclusive, op, self.lock_path, timeout,
                          migrating=None if exclusive else lambda: self._layout(op) in ('single', 'moving'))
            yield self._layout(op)
        finally:
            os.close(fd)  # closing releases the flock

    def _layout(self, op):
        try:
            mode = os.stat(self.path).st_mode
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise self._os_error(op, exc)
            return 'moving' if os.path.exists(self.moving_path) else 'none'
        if stat.S_ISDIR(mode):
            return 'folder'
        if stat.S_ISREG(mode):
            return 'single'
        raise StoreError('file store %s: %s is neither a folder nor a file' % (self.path, self.path))

    @contextlib.contextmanager
    def _entry_lock(self, path, op):
        name = hashlib.sha256(path.encode('utf-8')).hexdigest()[:40] + '.lock'
        lock_path = os.path.join(self.locks, name)
        try:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:
                self._makedirs(self.locks)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._os_error(op + ' (lock)', exc)
        try:
            self._acquire(fd, True, op, lock_path)
            yield
        finally:
            os.close(fd)

    # -- files -------------------------------------------------------------------------------

    def _entry_file(self, path, root=None):
        segments = path.split('/')
        for segment in segments:
            if len(segment.encode('utf-8')) > MAX_SEGMENT_BYTES:
                raise StoreConfigError('file store %s: path %s has a segment longer than %d bytes' % (self.path, path, MAX_SEGMENT_BYTES))
        return os.path.join(root or self.path, *(segments[:-1] + [segments[-1] + ENTRY_SUFFIX]))

    def _makedirs(self, folder):
        """Create folder and its missing parents (0700), each made durable in its parent."""
        missing = []
        current = folder
        while not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for created in reversed(missing):
            try:
                os.mkdir(created, 0o700)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
            _fsync_dir(os.path.dirname(created))

    def _write_file(self, target, blob):
        """Temporary file in target's folder, fsync, rename over target, fsync the folder. blob: bytes, or bytes slices."""
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            self._makedirs(folder)
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.tmp', dir=folder)
        try:
            with os.fdopen(fd, 'wb') as handle:
                os.fchmod(handle.fileno(), 0o600)
                for piece in [blob] if isinstance(blob, bytes) else blob:
                    handle.write(piece)
                handle.flush()
                os.fsync(handle.fileno())
            self._folder_sync.rename(tmp, target)
            tmp = None
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    @staticmethod
    def _read_bytes(target):
        """The file's bytes, or None when it does not exist."""
        try:
            with open(target, 'rb') as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def _encode_entry(self, path, version, data):
        text = json.dumps({'about': ENTRY_ABOUT, 'path': path, 'version': version, 'data': data}, indent=2, ensure_ascii=False)
        return self._vault.encrypt(text.encode('utf-8') + b'\n').encode('ascii')

    def _load_entry(self, path, target, op):
        """(data, version) of the entry file at target; (None, 0) when there is none."""
        try:
            raw = self._read_bytes(target)
        except OSError as exc:
            raise self._os_error(op, exc)
        if raw is None:
            return None, 0
        where = 'the entry file %s' % target
        document = self._decrypt(raw, where)
        if (not isinstance(document, dict) or not isinstance(document.get('version'), int)
                or not isinstance(document.get('data'), dict)):
            raise StoreError('file store %s: %s is malformed (needs version: int and data: mapping)' % (self.path, where))
        if document.get('path') not in (None, path):
            raise StoreError('file store %s: %s holds the entry %s, not %s; was it moved?' % (self.path, where, document['path'], path))
        self._password_checked = True
        return document['data'], document['version']

    def _check_password(self, target, op):
        """Before this run's first write, open one existing entry: a wrong password must not start a second store.

        With one file per entry, a new entry written with another password would succeed and leave
        the store in two passwords; a read of the entry first (as every rotation does) makes this free.
        """
        if self._password_checked:
            return
        with self._check_lock:
            if self._password_checked:
                return
            sample = self._any_entry_file([os.path.dirname(target), self.path])
            if sample is not None:
                try:
                    raw = self._read_bytes(sample)
                except OSError as exc:
                    raise self._os_error(op, exc)
                if raw is not None:
                    self._decrypt(raw, 'the entry file %s' % sample, check=True)
            self._password_checked = True

    def _any_entry_file(self, tops):
        for top in tops:
            for root, dirs, files in os.walk(top):
                if root == self.path:
                    dirs[:] = [d for d in dirs if d != LOCKS]
                for name in files:
                    if name.endswith(ENTRY_SUFFIX):
                        return os.path.join(root, name)
        return None

    # -- the key cache -----------------------------------------------------------------------

    def _read_keyring(self, target):
        """(KeyTable, salt) of the key cache file, (None, None) when there is none; VaultFormatError/ValueError when it
        does not open. Read a slice at a time: at 10,000 entries the file is megabytes, and every module opens it."""
        try:
            handle = open(target, 'rb')
        except FileNotFoundError:
            return None, None
        with handle:
            salt, plain = self._vault.open_file(handle)
        document = json.loads(plain)
        del plain
        if isinstance(document.get('records'), str):
            return KeyTable(base64.b64decode(document['records'])), salt
        # The first format, {salt hex: keys hex}: read, and replaced by the next run that derives a key.
        pairs = ((binascii.unhexlify(hex_salt), binascii.unhexlify(keys)) for hex_salt, keys in (document.get("keys") or {}).items())
        return KeyTable.of((entry, (keys[:32], keys[32:64], keys[64:])) for entry, keys in pairs if len(keys) == 80), salt

    def _load_keyring(self):
        """Adopt the keys the key cache holds: one derivation opens the keys of every entry file it lists."""
        try:
            table, salt = self._read_keyring(os.path.join(self.path, KEYRING))
            if table is not None:
                self._vault.adopt(table)
                self._keyring_salt = salt
        except (OSError, ValueError, TypeError, AttributeError, binascii.Error, VaultFormatError):
            pass   # a cache that does not open is no cache: every entry opens with the password

    def close(self):
        """Keep the keys this run derived for its entry files in the key cache, for the next run."""
        self._vault.close()
        try:
            self._save_keyring()
        except (OSError, StoreError, ValueError, TypeError, binascii.Error, VaultFormatError):
            pass   # the next run derives those keys again, nothing else

    def _save_keyring(self):
        fresh = self._vault.derived - set([self._keyring_salt])
        if not fresh or not os.path.isdir(self.path):
            return
        op = 'keep the key cache'
        with self._store_lock(op) as layout:
            if layout != 'folder':
                return
            with self._entry_lock(KEYRING, op):
                target = os.path.join(self.path, KEYRING)
                kept = None
                try:
                    kept, _salt = self._read_keyring(target)
                    if kept is not None:
                        self._vault.adopt(kept)
                except (ValueError, TypeError, binascii.Error, VaultFormatError):
                    pass    # made with another password, or damaged: it is replaced
                live = self._live_salts()
                table = KeyTable.of((salt, keys) for salt, keys in ((salt, self._vault.keys(salt)) for salt in live) if keys is not None)
                if kept is not None and table.records == kept.records:
                    return
                document = {'about': 'tokenops.rotation key cache: the derived keys of the entry files, so that a run '
                                     'derives them once. Delete it at any time; it is made again.',
                            'format': 'records: base64 of %d-byte records sorted by salt, each an entry file\'s 32-byte salt '
                                      'and its 80 bytes of derived keys' % KeyTable.RECORD,
                            'entries': len(table),
                            'records': base64.b64encode(table.records).decode('ascii')}
                salt, chunks = self._vault.encrypt_chunks(json.dumps(document, sort_keys=True).encode('utf-8'))
                self._write_file(target, chunks)
                self._keyring_salt = salt

    def _live_salts(self):
        """The salts of the entry files now in the store (the first bytes of each file hold its salt)."""
        salts = set()
        for root, dirs, files in os.walk(self.path):
            if root == self.path:
                dirs[:] = [d for d in dirs if d != LOCKS]
            for name in files:
                if name.endswith(ENTRY_SUFFIX):
                    try:
                        with open(os.path.join(root, name), 'rb') as handle:
                            salt = salt_of(handle.read(512))
                    except OSError:
                        continue
                    if salt is not None:
                        salts.add(salt)
        return salts

    # -- the earlier single-file format ------------------------------------------------------

    def _single_file_entries(self, source, op):
        """The entries of a single-file store, decrypted once per process while the file is unchanged."""
        try:
            with open(source, 'rb') as handle:
                info = os.fstat(handle.fileno())
                stamp = (source, info.st_ino, info.st_mtime_ns, info.st_size)
                cached = self._single_file_cache
                if cached is not None and cached[0] == stamp:
                    return cached[1]
                raw = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._os_error(op, exc)
        if not raw.strip():
            entries = {}
        else:
            document = self._decrypt(raw, 'the file')
            entries = document.get('entries') if isinstance(document, dict) else None
            if document is None or (entries is None and isinstance(document, dict) and not document):
                entries = {}
            if not isinstance(entries, dict):
                raise StoreError('file store %s: the decrypted file has no "entries" mapping' % self.path)
            for key, value in entries.items():
                if not isinstance(value, dict) or not isinstance(value.get('version'), int) or not isinstance(value.get('data'), dict):
                    raise StoreError('file store %s: entry %r is malformed (needs version: int and data: mapping)' % (self.path, key))
        self._single_file_cache = (stamp, entries)
        self._password_checked = True
        return entries

    def migrate(self):
        """Turn a single-file store into the folder layout; False when there was nothing to do.

        Every write does this first when it finds the single file; callers may also run it on purpose.
        """
        op = 'migrate the single-file store'
        with self._migration_lock:   # other threads of this run wait here instead of timing out
            with self._store_lock(op, exclusive=True, write=True, timeout=max(self.timeout, MIGRATION_WAIT)) as layout:
                return self._migrate(layout, op)

    def _migrate(self, layout, op):
        self._remove_stale_migrations()
        if layout == 'folder':
            if os.path.exists(self.moving_path):  # interrupted after the switch: keep the old file, as a finished one does
                self._keep_single_file()
            return False
        if layout == 'none':
            return False
        source = self.path if layout == 'single' else self.moving_path
        entries = self._single_file_entries(source, op)
        try:
            building = tempfile.mkdtemp(prefix='.%s.new-' % os.path.basename(self.path), dir=self.folder)
            try:
                def move(path):
                    item = entries[path]
                    self._write_file(self._entry_file(check_path(path), building),
                                     self._encode_entry(path, item['version'], _plain(item['data'])))

                # in parallel: the writes wait for the disk, and the key helper derives beside them
                with ThreadPoolExecutor(max_workers=MIGRATION_THREADS) as pool:
                    list(pool.map(move, sorted(entries)))
                _fsync_dir(building)
                if layout == 'single':
                    os.rename(self.path, self.moving_path)
                os.rename(building, self.path)
                building = None
                _fsync_dir(self.folder)
            finally:
                if building is not None:
                    self._remove_tree(building)
            self._keep_single_file()
        except OSError as exc:
            raise self._os_error(op, exc)
        return True

    def _keep_single_file(self):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')
        os.rename(self.moving_path, '%s.single-file-%s' % (self.path, stamp))
        _fsync_dir(self.folder)

    def _remove_stale_migrations(self):
        prefix = '.%s.new-' % os.path.basename(self.path)
        for name in os.listdir(self.folder):
            if name.startswith(prefix):
                self._remove_tree(os.path.join(self.folder, name))

    @staticmethod
    def _remove_tree(top):
        for root, dirs, files in os.walk(top, topdown=False):
            for name in files:
                os.unlink(os.path.join(root, name))
            for name in dirs:
                os.rmdir(os.path.join(root, name))
        os.rmdir(top)

    # -- the interface -----------------------------------------------------------------------

    def read(self, path):
        path = check_path(path)
        self._log('GET', path)
        op = 'read %s' % path
        with self._store_lock(op) as layout:
            if layout == 'folder':
                data, version = self._load_entry(path, self._entry_file(path), op)
                return Entry(data, version)
            if layout in ('single', 'moving'):
                item = self._single_file_entries(self.path if layout == 'single' else self.moving_path, op).get(path)
                if item is not None:
                    return Entry(item['data'], item['version'])
        return Entry(None, 0)

    @contextlib.contextmanager
    def _writing(self, op):
        """The store lock for a write, with the store in the folder layout (migrated or created)."""
        while True:
            with self._store_lock(op, write=True) as layout:
                if layout == 'none':
                    try:
                        os.mkdir(self.path, 0o700)
                        _fsync_dir(self.folder)
                        layout = 'folder'
                    except OSError as exc:
                        if exc.errno != errno.EEXIST:
                            raise self._os_error(op, exc)
                        layout = self._layout(op)  # someone else made it first
                if layout == 'folder':
                    yield
                    return
            self.migrate()

    def write(self, path, data, cas):
        path = check_path(path)
        if not isinstance(data, dict):
            raise StoreConfigError('file store %s: write %s: data must be a dict' % (self.path, path))
        if isinstance(cas, bool) or not isinstance(cas, int) or cas < 0:
            raise StoreConfigError('file store %s: write %s: cas must be an integer >= 0' % (self.path, path))
        data = _plain(data)
        target = self._entry_file(path)
        self._log('POST', path)
        op = 'write %s' % path
        with self._writing(op), self._entry_lock(path, op):
            _data, version = self._load_entry(path, target, op)
            self._check_password(target, op)
            if version != cas:
                raise StoreConflict('file store %s: write %s: the entry changed since it was read (expected version %d, found %d)'
                                    % (self.path, path, cas, version))
            blob = self._encode_entry(path, version + 1, data)
            try:
                self._write_file(target, blob)
            except OSError as exc:
                raise self._os_error(op, exc)
        return version + 1

    def delete(self, path):
        path = check_path(path)
        target = self._entry_file(path)
        self._log('DELETE', path)
        op = 'delete %s' % path
        with self._store_lock(op) as layout:
            if layout == 'none':
                return False
        with self._writing(op), self._entry_lock(path, op):
            try:
                os.unlink(target)
                _fsync_dir(os.path.dirname(target))
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise self._os_error(op, exc)
        return True

    def list(self, prefix):
        prefix = check_prefix(prefix)
        self._log('LIST', prefix)
        op = 'list %s' % (prefix or '/')
        with self._store_lock(op) as layout:
            if layout in ('single', 'moving'):
                entries = self._single_file_entries(self.path if layout == 'single' else self.moving_path, op)
                return sorted(key for key in entries if not prefix or key.startswith(prefix + '/'))
            if layout == 'none':
                return []
            top = os.path.join(self.path, *prefix.split('/')) if prefix else self.path
            found = []
            for root, dirs, files in os.walk(top, onerror=self._walk_error(op)):
                if root == self.path:
                    dirs[:] = [d for d in dirs if d != LOCKS]
                relative = os.path.relpath(root, self.path)
                for name in files:
                    if name.endswith(ENTRY_SUFFIX):
                        entry = name[:-len(ENTRY_SUFFIX)]
                        found.append(entry if relative == '.' else '%s/%s' % (relative.replace(os.sep, '/'), entry))
            return sorted(found)

    def _walk_error(self, op):
        def raise_it(exc):
            if exc.errno != errno.ENOENT:
                raise self._os_error(op, exc)
        return raise_it
