# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The Open Payments authorization server and the client's identity. List it before
    # tokenops.rotation.connection: the first fragment wins a merge.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - The grant endpoint of the Open Payments authorization server, that is the C(authServer) value of the
        resource owner's wallet address (C(GET https://wallet.example/alice) returns it), for example
        C(https://auth.wallet.example/tenant).
      - Falls back to the environment variable E(OPEN_PAYMENTS_AUTH_SERVER).
      - The store entries of this server live under its host unless O(store.host) says otherwise.
  client_wallet_address:
    description:
      - The client's own wallet address, sent as the grant request's C(client). The authorization
        server reads the client's public keys from its C(jwks.json).
      - Falls back to the environment variable E(OPEN_PAYMENTS_WALLET_ADDRESS).
    type: str
  key_id:
    description:
      - The id (JWK C(kid)) of the client key published at the wallet address's C(jwks.json); every
        request's signature names it.
      - Falls back to the environment variable E(OPEN_PAYMENTS_KEY_ID).
    type: str
  private_key:
    description:
      - The client's Ed25519 private key, as PEM (PKCS#8, as Open Payments wallets issue it) or as the
        base64 of that PEM (the form the Interledger test wallet and the SDKs' C(loadBase64Key) use).
      - Every request to the authorization server is signed with it (HTTP Message Signatures, RFC 9421).
      - Falls back to the environment variable E(OPEN_PAYMENTS_PRIVATE_KEY). Mutually exclusive with O(private_key_path).
    type: str
  private_key_path:
    description:
      - A file holding the client's Ed25519 private key (PEM, or base64 of the PEM).
      - Falls back to the environment variable E(OPEN_PAYMENTS_PRIVATE_KEY_PATH).
    type: path
"""
