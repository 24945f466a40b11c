"""What the consumer tests share: the collection's OpenBao store as a consumer reads it, with hvac.

A consumer knows only the store's address, a token that may read, and the documented path of an entry
(<prefix>/<product>/<host>/<token id> in the KV v2 mount `secret`, field `secret`).
"""

import pytest

import conftest

hvac = pytest.importorskip("hvac", reason="hvac is a test dependency (tests/requirements.txt)")


@pytest.fixture
def bao_store(bao, tmp_path):
    """The collection's store in OpenBao, the way consumers share it."""
    return conftest.StoreUnderTest("vault", tmp_path, bao)


def read_entry(bao, store, product, host, token_id):
    """The stored record of a token, read with hvac as any consumer would (not with the collection's own code)."""
    client = hvac.Client(url=bao.url, token=bao.token)
    path = "%s/%s/%s/%s" % (store.prefix, product, host, token_id)
    response = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    return response["data"]["data"]
