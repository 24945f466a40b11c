# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The file store at fleet scale: one ansible-vault file per entry, concurrent writers, crashes, migration.

The contract both backends share is in test_store.py; these are the file store's own promises.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from ansible_collections.tokenops.rotation.plugins.module_utils import store_file
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    Entry,
    StoreConfigError,
    StoreConflict,
    resolve_store_params,
    store_from_params,
)

PASSWORD = 'fleet password 42'
CLI = os.path.join(os.path.dirname(sys.executable), 'ansible-vault')
FORK = multiprocessing.get_context('fork')


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ('TOKENOPS_STORE_FILE', 'ANSIBLE_VAULT_PASSWORD_FILE'):
        monkeypatch.delenv(name, raising=False)


def open_store(path, **params):
    return store_from_params(dict({'backend': 'file', 'file_path': str(path), 'vault_password': PASSWORD}, **params))


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / 'store.vault'


def password_file(tmp_path):
    path = tmp_path / 'vault-pass'
    path.write_text(PASSWORD + '\n')
    return str(path)


def entry_files(store_path):
    found = []
    for root, dirs, files in os.walk(store_path):
        dirs[:] = [d for d in dirs if d != store_file.LOCKS]
        found.extend(os.path.join(root, name) for name in files)
    return sorted(found)


def without_about(document):
    assert document.pop('about').startswith('tokenops.rotation store entry')
    return document


def single_file_store(path, entries):
    """A store in the format of earlier versions: one ansible-vault file holding every entry."""
    text = store_file.SINGLE_FILE_HEADER + yaml.safe_dump({'entries': entries})
    path.write_bytes(store_file.vault_encrypt(text.encode(), PASSWORD.encode()).encode())
    (path.parent / (path.name + '.lock')).touch(mode=0o600)   # every earlier version made it with the store


def old_entries(count):
    return {'tokenops/das/h_443/tok-%03d' % n: {'version': n % 4 + 1, 'data': {'secret': 'old-%d' % n, 'n': n}}
            for n in range(count)}


# -- concurrency -------------------------------------------------------------------------------

def _writer_process(path, proc_no, threads, entries, rounds, barrier, failures):
    store = open_store(path)
    errors = []

    def write_mine(thread_no):
        try:
            for round_no in range(rounds):
                for n in range(entries):
                    entry = 'fleet/p%d/t%d/e%d' % (proc_no, thread_no, n)
                    store.write(entry, {'secret': 's-%d-%d-%d' % (proc_no, thread_no, n), 'round': round_no}, round_no)
        except Exception as exc:  # reported to the parent
            errors.append(repr(exc))

    barrier.wait()
    workers = [threading.Thread(target=write_mine, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    failures.put(errors)


@pytest.mark.parametrize('start', ['empty', 'single file'])
def test_many_processes_and_threads_write_different_entries_and_lose_none(store_path, start):
    """Processes x threads, each writing its own entries several times (check-and-set each time) at once.

    Started on a single-file store, the writers also race to migrate it: the old entries survive too.
    """
    procs, threads, entries, rounds = 3, 4, 3, 2
    old = old_entries(20) if start == 'single file' else {}
    if old:
        single_file_store(store_path, old)
    barrier = FORK.Barrier(procs)
    failures = FORK.Queue()
    workers = [FORK.Process(target=_writer_process, args=(str(store_path), p, threads, entries, rounds, barrier, failures))
               for p in range(procs)]
    for worker in workers:
        worker.start()
    errors = [failures.get(timeout=120) for _worker in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert errors == [[]] * procs
    store = open_store(store_path)
    mine = ['fleet/p%d/t%d/e%d' % (p, t, n) for p in range(procs) for t in range(threads) for n in range(entries)]
    assert store.list('fleet') == sorted(mine)
    for p in range(procs):
        for t in range(threads):
            for n in range(entries):
                assert store.read('fleet/p%d/t%d/e%d' % (p, t, n)) == Entry({'secret': 's-%d-%d-%d' % (p, t, n), 'round': rounds - 1}, rounds)
    for path, item in old.items():
        assert store.read(path) == Entry(item['data'], item['version'])
    assert store.list('') == sorted(mine + list(old))
    if old:
        assert len([n for n in os.listdir(store_path.parent) if '.single-file-' in n]) == 1   # migrated once


def test_two_threads_writing_one_entry_one_wins_the_other_conflicts(store_path):
    store = open_store(store_path)
    store.write('shared/entry', {'secret': 'v1'}, 0)
    barrier = threading.Barrier(8)
    outcomes = []

    def race(n):
        barrier.wait()
        try:
            outcomes.append(('won', n, store.write('shared/entry', {'secret': 'writer-%d' % n}, 1)))
        except StoreConflict:
            outcomes.append(('conflict', n, None))

    racers = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(o[0] for o in outcomes) == ['conflict'] * 7 + ['won']
    winner = [o for o in outcomes if o[0] == 'won'][0]
    assert winner[2] == 2
    assert open_store(store_path).read('shared/entry') == Entry({'secret': 'writer-%d' % winner[1]}, 2)


def test_writers_into_one_folder_share_its_fsyncs_and_each_waits_for_one_after_its_rename(store_path, monkeypatch):
    """Group commit: a write returns only after an fsync of its folder that began after its rename."""
    store = open_store(store_path)
    store.write('g/first', {'n': 0}, 0)
    events = []
    lock = threading.Lock()
    real_replace, real_fsync_dir = os.replace, store_file._fsync_dir

    def replace(source, target):
        real_replace(source, target)
        with lock:
            events.append(('renamed', target))

    def fsync_dir(folder):
        with lock:
            events.append(('fsync begins', folder))
        threading.Event().wait(0.02)             # a disk that takes its time
        real_fsync_dir(folder)
        with lock:
            events.append(('fsync ends', folder))

    monkeypatch.setattr(store_file.os, 'replace', replace)
    monkeypatch.setattr(store_file, '_fsync_dir', fsync_dir)
    returned = {}

    def write_some(t):
        for n in range(6):
            target = os.path.join(str(store_path), 'g', 't%d-%d.vault' % (t, n))
            store.write('g/t%d-%d' % (t, n), {'n': n}, 0)
            with lock:
                returned[target] = len(events)

    writers = [threading.Thread(target=write_some, args=(t,)) for t in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    folder = os.path.join(str(store_path), 'g')
    begins = [i for i, (kind, where) in enumerate(events) if kind == 'fsync begins' and where == folder]
    assert len(begins) < 48                      # fewer folder fsyncs than writes
    for target, seen in returned.items():
        renamed = events.index(('renamed', target))
        began = [i for i in begins if i > renamed]
        assert began, target
        ended = [i for i, e in enumerate(events) if e == ('fsync ends', folder) and i > began[0]]
        assert ended and ended[0] < seen, target     # the fsync that covers it had ended before write() returned


# -- crashes -----------------------------------------------------------------------------------

def _paused_writer(path, entry, cas, where, ready):
    """Write entry, but stop for good at `where` (a function of os that the write calls), as if killed there."""
    store = open_store(path)
    real = getattr(os, where)

    def stop_here(*args, **kwargs):
        if where == 'fsync' and not os.path.isfile(os.readlink('/proc/self/fd/%d' % args[0])):
            return real(*args, **kwargs)   # only the entry's temporary file, not its folder
        ready.set()
        threading.Event().wait()

    setattr(store_file.os, where, stop_here)
    store.write(entry, {'secret': 'never-stored'}, cas)


@pytest.mark.parametrize('where', ['fsync', 'replace'])
def test_a_process_killed_mid_write_leaves_every_entry_readable(store_path, where):
    store = open_store(store_path)
    for n in range(5):
        store.write('crash/e%d' % n, {'secret': 'kept-%d' % n}, 0)
    ready = FORK.Event()
    child = FORK.Process(target=_paused_writer, args=(str(store_path), 'crash/e2', 1, where, ready))
    child.start()
    assert ready.wait(60), 'the writer did not reach %s' % where
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    after = open_store(store_path)
    for n in range(5):
        assert after.read('crash/e%d' % n) == Entry({'secret': 'kept-%d' % n}, 1)
    assert after.list('crash') == ['crash/e%d' % n for n in range(5)]   # the dead writer's temporary file is no entry
    assert after.write('crash/e2', {'secret': 'next'}, 1) == 2             # its lock died with it


def _endless_writer(path, started):
    store = open_store(path)
    version = {n: store.read('loop/e%d' % n).version for n in range(4)}
    while True:
        for n in range(4):
            version[n] = store.write('loop/e%d' % n, {'n': version[n]}, version[n])
            started.set()


def test_processes_killed_at_any_moment_leave_every_entry_readable(store_path):
    """Writers killed wherever they happen to be: every entry still opens, each version matches its data."""
    store = open_store(store_path)
    for n in range(4):
        store.write('loop/e%d' % n, {'n': 0}, 0)
    for _kill in range(6):
        started = FORK.Event()
        child = FORK.Process(target=_endless_writer, args=(str(store_path), started))
        child.start()
        assert started.wait(60)
        # let it get into a write of some entry, at no particular point of it
        threading.Event().wait(0.01 + 0.013 * _kill)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        check = open_store(store_path)
        for n in range(4):
            entry = check.read('loop/e%d' % n)
            assert entry.data == {'n': entry.version - 1}
        # the next writer carries on from what is there
        for n in range(4):
            current = check.read('loop/e%d' % n)
            check.write('loop/e%d' % n, {'n': current.version}, current.version)


# -- the single-file format of earlier versions -----------------------------------------------

def test_a_single_file_store_is_read_as_it_is_and_migrated_by_the_first_write(store_path, tmp_path):
    old = old_entries(30)
    single_file_store(store_path, old)
    original = store_path.read_bytes()
    store = open_store(store_path)
    for path, item in old.items():
        assert store.read(path) == Entry(item['data'], item['version'])
    assert store.list('tokenops/das') == sorted(old)
    assert store.derivations == 1                                   # decrypted once for 30 reads
    assert store_path.read_bytes() == original and store_path.is_file()   # reads change nothing

    first = 'tokenops/das/h_443/tok-007'
    assert store.write(first, {'secret': 'new'}, old[first]['version']) == old[first]['version'] + 1
    assert store_path.is_dir()
    kept = [name for name in os.listdir(tmp_path) if name.startswith('store.vault.single-file-')]
    assert len(kept) == 1 and (tmp_path / kept[0]).read_bytes() == original    # the old file, kept as it was
    assert not (tmp_path / 'store.vault.migrating').exists()
    assert [n for n in os.listdir(tmp_path) if '.new-' in n] == []
    fresh = open_store(store_path)
    for path, item in old.items():
        expected = Entry({'secret': 'new'}, item['version'] + 1) if path == first else Entry(item['data'], item['version'])
        assert fresh.read(path) == expected
    assert fresh.list('') == sorted(old)
    view = subprocess.run([CLI, 'view', '--vault-password-file', password_file(tmp_path),
                           str(store_path / 'tokenops' / 'das' / 'h_443' / 'tok-003.vault')],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert without_about(yaml.safe_load(view)) == {'path': 'tokenops/das/h_443/tok-003', 'version': 4, 'data': {'secret': 'old-3', 'n': 3}}


def test_a_single_file_store_encrypted_by_ansible_vault_is_migrated(store_path, tmp_path):
    store_path.write_text(yaml.safe_dump({'entries': {'a/b': {'version': 4, 'data': {'secret': 'cli'}}}}))
    subprocess.run([CLI, 'encrypt', '--vault-password-file', password_file(tmp_path), str(store_path)],
                   capture_output=True, text=True, timeout=60, check=True)
    store = open_store(store_path)
    assert store.read('a/b') == Entry({'secret': 'cli'}, 4)
    assert store.migrate() is True
    assert store.migrate() is False
    assert open_store(store_path).read('a/b') == Entry({'secret': 'cli'}, 4)


def _paused_migration(path, ready):
    store = open_store(path)
    real = os.rename

    def stop_after_moving_aside(src, dst):
        real(src, dst)
        if dst.endswith('.migrating'):
            ready.set()
            threading.Event().wait()

    store_file.os.rename = stop_after_moving_aside
    store.write('tokenops/das/h_443/new', {'secret': 'never-stored'}, 0)


def test_a_migration_killed_half_way_loses_nothing_and_the_next_write_finishes_it(store_path, tmp_path):
    old = old_entries(12)
    single_file_store(store_path, old)
    ready = FORK.Event()
    child = FORK.Process(target=_paused_migration, args=(str(store_path), ready))
    child.start()
    assert ready.wait(60)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert not store_path.exists() and (tmp_path / 'store.vault.migrating').is_file()
    reader = open_store(store_path)
    for path, item in old.items():                     # readers read the file that was moved aside
        assert reader.read(path) == Entry(item['data'], item['version'])
    assert reader.list('') == sorted(old)
    writer = open_store(store_path)
    assert writer.write('tokenops/das/h_443/new', {'secret': 'stored'}, 0) == 1
    assert store_path.is_dir() and not (tmp_path / 'store.vault.migrating').exists()
    assert [n for n in os.listdir(tmp_path) if '.new-' in n] == []   # the dead migration's half-built folder is gone
    assert open_store(store_path).list('') == sorted(list(old) + ['tokenops/das/h_443/new'])


def _reader_process(path, go, ready, results):
    store = open_store(path, timeout=0.2)
    go.wait(60)
    ready.set()
    try:
        results.put(('read', store.read('tokenops/das/h_443/tok-001').data))
    except Exception as exc:  # reported to the parent
        results.put(('error', repr(exc)))


def test_a_migration_takes_what_it_takes_and_others_wait_for_it_rather_than_time_out(store_path, monkeypatch):
    """Readers in this run and in other processes wait for a migration far longer than the store's timeout."""
    old = old_entries(12)
    single_file_store(store_path, old)
    store = open_store(store_path, timeout=0.2)
    inside, release = threading.Event(), threading.Event()
    real_encode = store_file.FileStore._encode_entry

    def slow_encode(self, *args):
        inside.set()
        release.wait(60)
        return real_encode(self, *args)

    monkeypatch.setattr(store_file.FileStore, '_encode_entry', slow_encode)
    # forked before the migration holds its lock: a child forked later would hold that lock's descriptor too
    go, ready, results = FORK.Event(), FORK.Event(), FORK.Queue()
    other = FORK.Process(target=_reader_process, args=(str(store_path), go, ready, results))
    other.start()
    writer = threading.Thread(target=store.write, args=('tokenops/das/h_443/new', {'secret': 'new'}, 0))
    writer.start()
    assert inside.wait(60)                               # the migration holds the store lock now
    read = []
    readers = [threading.Thread(target=lambda p=p: read.append(store.read(p))) for p in sorted(old)[:4]]
    for reader in readers:
        reader.start()
    go.set()
    assert ready.wait(60)
    threading.Event().wait(1.0)                          # five times the store's timeout
    release.set()
    writer.join(60)
    for reader in readers:
        reader.join(60)
    assert sorted(read, key=lambda e: e.data['n']) == [Entry(old[p]['data'], old[p]['version']) for p in sorted(old)[:4]]
    assert results.get(timeout=60) == ('read', old['tokenops/das/h_443/tok-001']['data'])
    other.join(30)
    assert store_path.is_dir() and open_store(store_path).read('tokenops/das/h_443/new') == Entry({'secret': 'new'}, 1)


# -- the format --------------------------------------------------------------------------------

def test_every_entry_opens_with_the_ansible_vault_cli(store_path, tmp_path):
    store = open_store(store_path)
    paths = ['tokenops/das/127.0.0.1_8443/app', 'tokenops/das/127.0.0.1_8443/systems/s1/opa',
             'tokenops/dpa/dpa.local/reporting', 'top']
    for n, path in enumerate(paths):
        store.write(path, {'secret': 'secret-%d' % n, 'fields': {'list': [1, 'two']}}, 0)
    store.write(paths[0], {'secret': 'rotated'}, 1)
    files = entry_files(store_path)
    targets = [os.path.join(str(store_path), *path.split('/')) + '.vault' for path in paths]
    assert files == sorted(targets)
    expected = [{'path': path, 'version': 1, 'data': {'secret': 'secret-%d' % n, 'fields': {'list': [1, 'two']}}}
                for n, path in enumerate(paths)]
    expected[0] = {'path': paths[0], 'version': 2, 'data': {'secret': 'rotated'}}
    pw = password_file(tmp_path)
    # one ansible-vault run for every file (it starts slowly): `view` prints them one after the other
    view = subprocess.run([CLI, 'view', '--vault-password-file', pw] + targets, capture_output=True, text=True, timeout=120, check=True)
    shown, text, decoder = [], view.stdout.strip(), json.JSONDecoder()
    while text:
        document, end = decoder.raw_decode(text)
        shown.append(without_about(document))
        text = text[end:].strip()
    assert shown == expected
    out = subprocess.run([CLI, 'decrypt', '--vault-password-file', pw, '--output', '-', targets[1]],
                         capture_output=True, text=True, timeout=60, check=True)
    assert without_about(yaml.safe_load(out.stdout)) == expected[1]   # YAML reads it too


def test_a_new_entry_is_refused_with_another_password(store_path):
    open_store(store_path).write('a/b', {'secret': 'x'}, 0)
    wrong = open_store(store_path, vault_password='another password')
    with pytest.raises(store_file.StoreDenied) as exc:
        wrong.write('c/d', {'secret': 'y'}, 0)      # an entry of its own, but the store has another password
    assert 'nothing was written' in str(exc.value) and 'another password' not in str(exc.value)
    assert open_store(store_path).list('') == ['a/b']


def test_keys_are_derived_once_per_file(store_path):
    """A file written or read once in a run opens again without a key derivation; every write draws a new salt."""
    writer = open_store(store_path)
    for n in range(5):
        writer.write('k/e%d' % n, {'n': n}, 0)
    assert writer.derivations == 5
    store = open_store(store_path)
    for _again in range(3):
        for n in range(5):
            store.read('k/e%d' % n)
    assert store.derivations == 5             # no key cache yet: one derivation per file, once
    store.write('k/e0', {'n': 'next'}, 1)     # its check-and-set read opens e0 from the cache
    assert store.derivations == 6
    salts = set()
    for path in entry_files(store_path):
        salts.add(store_file._parse(open(path).read())[0])
    assert len(salts) == 5                    # no two files share a salt (and so an AES-CTR keystream)


def test_a_helper_process_derives_keys_ahead_and_every_file_still_opens(store_path):
    """Past a few writes, fresh salts and their keys come from a helper process (off the module's GIL)."""
    store = open_store(store_path)
    barrier = threading.Barrier(4)

    def write_some(t):
        barrier.wait()
        for n in range(15):
            store.write('h/t%d/e%d' % (t, n), {'n': n}, 0)

    writers = [threading.Thread(target=write_some, args=(t,)) for t in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    factory = store._vault._factory
    assert factory is not None
    helper = factory._proc
    deadline = time.monotonic() + 60
    while factory._ready.empty() and time.monotonic() < deadline:
        time.sleep(0.01)                        # the helper's next pair (a busy machine may take a while)
    derived = store.derivations
    store.write('h/from-the-helper', {'n': 'helper'}, 0)
    assert store.derivations == derived         # that write's salt and keys came from the helper
    salts = [store_file._parse(open(path).read())[0] for path in entry_files(store_path)]
    assert len(salts) == 61 == len(set(salts))  # never a salt twice, helper or not
    store.close()
    assert helper.poll() is not None            # the helper ends with the run
    fresh = open_store(store_path, vault_password_file=None)
    assert all(fresh.read('h/t%d/e%d' % (t, n)) == Entry({'n': n}, 1) for t in range(4) for n in range(15))
    assert fresh.read('h/from-the-helper') == Entry({'n': 'helper'}, 1)


def test_the_key_cache_opens_every_entry_with_one_derivation(store_path, tmp_path):
    writer = open_store(store_path)
    for n in range(20):
        writer.write('k/e%d' % n, {'n': n}, 0)
    writer.close()                            # a run ends: its derived keys are kept
    keyring = store_path / store_file.KEYRING
    assert keyring.read_text().startswith('$ANSIBLE_VAULT;1.1;AES256')
    view = subprocess.run([CLI, 'view', '--vault-password-file', password_file(tmp_path), str(keyring)],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    cache = yaml.safe_load(view)                        # it opens with the password like every entry
    assert cache['entries'] == 20 and len(base64.b64decode(cache['records'])) == 20 * store_file.KeyTable.RECORD

    reader = open_store(store_path)
    for n in range(20):
        assert reader.read('k/e%d' % n) == Entry({'n': n}, 1)
    assert reader.derivations == 1            # the key cache itself
    before = keyring.read_bytes()
    reader.close()
    assert keyring.read_bytes() == before     # a run that derived nothing new leaves it alone

    rotating = open_store(store_path)
    for n in range(10):
        rotating.write('k/e%d' % n, {'n': n + 100}, 1)
    rotating.close()
    assert cached_salts(keyring, rotating) == set(salts_of_entries(store_path))   # replaced files' keys are dropped, new ones kept
    fresh = open_store(store_path)
    assert [fresh.read('k/e%d' % n).version for n in range(20)] == [2] * 10 + [1] * 10
    assert fresh.derivations == 1


def cached_salts(keyring, store):
    records = base64.b64decode(json.loads(store._vault.decrypt(keyring.read_text()))['records'])
    size = store_file.KeyTable.RECORD
    return set(records[i:i + 32] for i in range(0, len(records), size))


def salts_of_entries(store_path):
    return [store_file._parse(open(path).read())[0] for path in entry_files(store_path) if path.endswith(store_file.ENTRY_SUFFIX)]


def test_the_key_cache_of_the_first_format_is_read_and_then_replaced(store_path):
    writer = open_store(store_path)
    for n in range(5):
        writer.write('k/e%d' % n, {'n': n}, 0)
    keys = dict((salt, writer._vault.keys(salt)) for salt in salts_of_entries(store_path))
    writer._vault.close()                     # the run ends without keeping a key cache of its own
    keyring = store_path / store_file.KEYRING
    document = {'keys': dict((s.hex(), b''.join(k).hex()) for s, k in keys.items())}
    keyring.write_text(store_file.vault_encrypt(json.dumps(document).encode(), PASSWORD.encode()))
    reader = open_store(store_path)
    assert [reader.read('k/e%d' % n) for n in range(5)] == [Entry({'n': n}, 1) for n in range(5)]
    assert reader.derivations == 1            # the key cache itself: its keys opened every entry
    reader.write('k/e0', {'n': 'new'}, 1)
    reader.close()
    assert cached_salts(keyring, reader) == set(salts_of_entries(store_path))
    assert 'records' in json.loads(reader._vault.decrypt(keyring.read_text()))


def random_pairs(count):
    """(salt, keys) pairs as the store derives them, without the cost of deriving."""
    return [(os.urandom(32), (os.urandom(32), os.urandom(32), os.urandom(16))) for _pair in range(count)]


def test_the_key_table_finds_each_salt_it_holds_and_no_other():
    pairs = random_pairs(200)
    table = store_file.KeyTable.of(pairs + [(b'short salt', (b'k' * 32, b'h' * 32, b'i' * 16))])
    assert len(table) == 200                  # ansible-vault's salts are 32 bytes; others are derived each time
    assert all(table.get(salt) == keys for salt, keys in pairs)
    assert table.get(os.urandom(32)) is None and table.get(b'short salt') is None and table.get(b'') is None
    assert store_file.KeyTable(table.records).get(pairs[7][0]) == pairs[7][1]
    with pytest.raises(ValueError):
        store_file.KeyTable(b'x' * 100)


def test_the_key_cache_of_a_large_store_opens_in_less_memory_than_its_size(store_path):
    # Every module of a job opens the key cache at once; at 10,000 entries the first format took 5 times the file's
    # size (about 50 MB) in each of them, which is what the job's peak memory was made of.
    import tracemalloc
    pairs = random_pairs(5000)
    table = store_file.KeyTable.of(pairs)
    document = {'records': base64.b64encode(table.records).decode('ascii'), 'entries': len(table)}
    open_store(store_path).write('k/e', {'n': 1}, 0)
    keyring = store_path / store_file.KEYRING
    keyring.write_text(store_file.vault_encrypt(json.dumps(document).encode(), PASSWORD.encode()))
    size = keyring.stat().st_size
    reader = open_store(store_path)
    tracemalloc.start()
    try:
        assert reader.read('k/e') == Entry({'n': 1}, 1)    # its first read opens the key cache
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader._vault.keys(pairs[4321][0]) == pairs[4321][1]
    assert peak < size, (peak, size)          # read a slice at a time: never the whole text, let alone its copies
    assert kept < size / 2, (kept, size)      # one object for all the keys, not three per entry


def test_a_wrong_or_damaged_key_cache_costs_time_never_a_result(store_path):
    writer = open_store(store_path)
    for n in range(3):
        writer.write('k/e%d' % n, {'n': n}, 0)
    writer.close()
    keyring = store_path / store_file.KEYRING
    # keys that do not fit their salt: the password decides
    salts = [store_file._parse(open(path).read())[0] for path in entry_files(store_path)]
    wrong = {salt: (b'k' * 32, b'h' * 32, b'i' * 16) for salt in salts}
    document = {'keys': dict((s.hex(), b''.join(k).hex()) for s, k in wrong.items())}
    keyring.write_text(store_file.vault_encrypt(json.dumps(document).encode(), PASSWORD.encode()))
    reader = open_store(store_path)
    assert [reader.read('k/e%d' % n) for n in range(3)] == [Entry({'n': n}, 1) for n in range(3)]
    assert reader.derivations == 4
    keyring.write_text('not a vault at all')
    reader = open_store(store_path)
    assert [reader.read('k/e%d' % n) for n in range(3)] == [Entry({'n': n}, 1) for n in range(3)]
    reader.close()                            # and it is made again
    assert open_store(store_path).read('k/e1') == Entry({'n': 1}, 1)
    assert keyring.read_text().startswith('$ANSIBLE_VAULT;')
    assert open_store(store_path).list('') == ['k/e0', 'k/e1', 'k/e2']   # the key cache is no entry


# -- the store's folder ------------------------------------------------------------------------

def test_a_missing_store_folder_fails_clearly_and_creates_nothing(tmp_path):
    missing = tmp_path / 'not-mounted' / 'tokens'
    with pytest.raises(StoreConfigError) as exc:
        store_from_params(resolve_store_params({'file_path': str(missing / 'store.vault'), 'vault_password': PASSWORD}))
    text = str(exc.value)
    assert 'store.file_path' in text and str(missing) in text and 'does not exist' in text and 'store.create_folder' in text
    assert os.listdir(tmp_path) == []


def test_create_folder_makes_the_folder_on_the_first_write(tmp_path):
    folder = tmp_path / 'new' / 'tokens'
    store = store_from_params(resolve_store_params({'file_path': str(folder / 'store.vault'), 'vault_password': PASSWORD,
                                                    'create_folder': True}))
    assert store.read('a/b') == Entry(None, 0) and store.list('') == []
    assert not (tmp_path / 'new').exists()           # reads create nothing
    assert store.write('a/b', {'secret': 'x'}, 0) == 1
    assert oct(os.stat(str(folder)).st_mode & 0o777) == '0o700'
    assert open_store(folder / 'store.vault').read('a/b') == Entry({'secret': 'x'}, 1)


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / 'afile').write_text('')
    with pytest.raises(StoreConfigError) as exc:
        open_store(tmp_path / 'afile' / 'store.vault', create_folder=True)
    assert 'is not a folder' in str(exc.value)


@pytest.mark.parametrize('size', [0, 1, 15, 16, 40959, 40960, 40961, 250001])
def test_a_large_file_read_a_slice_at_a_time_opens_as_the_whole_text_does(size, tmp_path):
    plaintext, salt = os.urandom(size), os.urandom(32)
    keys = (os.urandom(32), os.urandom(32), os.urandom(16))
    text = store_file._seal(plaintext, salt, keys)
    assert ''.join(piece.decode() for piece in store_file._seal_chunks(plaintext, salt, keys)) == text
    path = tmp_path / 'large.vault'
    for written in (text, '\n' + text.replace('\n', '\r\n')):         # and with CRLF line ends and a blank line first
        path.write_bytes(written.encode())
        with open(path, 'rb') as handle:
            assert bytes(store_file._open_file(handle, lambda seen: keys if seen == salt else None)) == plaintext
    lines = text.splitlines()
    middle = len(lines) // 2
    damaged = {
        'a digit changed': lines[:middle] + [lines[middle][:-1] + ('0' if lines[middle][-1] != '0' else '1')] + lines[middle + 1:],
        'cut short': lines[:-1] + [lines[-1][:-1]],
        'no body': lines[:1],
        'not vault': ['$ANSIBLE_VAULT;9.9;AES256'] + lines[1:],
    }
    for why, broken in damaged.items():
        path.write_text('\n'.join(broken) + '\n')
        with open(path, 'rb') as handle, pytest.raises(store_file.VaultFormatError):
            store_file._open_file(handle, lambda seen: keys)
            raise AssertionError(why)
    path.write_text(text)
    with open(path, 'rb') as handle, pytest.raises(store_file.VaultFormatError):
        store_file._open_file(handle, lambda seen: (os.urandom(32), os.urandom(32), os.urandom(16)))   # keys that do not fit
