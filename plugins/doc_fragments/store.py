# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Where secrets are persisted: HashiCorp Vault / OpenBao KV v2, or an ansible-vault file.
    DOCUMENTATION = r"""
options:
  store:
    description:
      - The secret store every minted secret is written to before the task returns.
      - One entry per credential, at C(<prefix>/<product>/<host>/<token id>) unless a token sets
        C(store_path). Consumers read its C(secret) key (see the C(tokenops.rotation.token) lookup).
      - Every write is check-and-set against the version read at the start of the run.
    type: dict
    suboptions:
      backend:
        description:
          - C(file) keeps entries in a local folder, one file per entry encrypted in the C(ansible-vault)
            format (C(ansible-vault view FILE) opens each). C(vault) uses a HashiCorp Vault or OpenBao KV
            version 2 mount.
        type: str
        choices: [file, vault]
        default: file
      prefix:
        description: First part of every entry path.
        type: str
        default: tokenops
      host:
        description:
          - Third part of the entry path. Defaults to the host of the product API URL, lowercased, with
            its port after an underscore (C(das.example.com_8443) for C(https://das.example.com:8443));
            roles pass C(inventory_hostname).
          - A C(:) becomes C(_) here too, so the module's C(store_path) is the path the entry has. The
            C(tokenops.rotation.token) lookup takes either form.
        type: str
      file_path:
        description:
          - The store of the C(file) backend, a folder with one C(ansible-vault) file per entry at
            C(<file_path>/<entry path>.vault). It is created (mode 0700) by the first write.
          - The folder that holds it must exist, unless O(store.create_folder=true). In a container
            (an AWX execution environment) it must be on a persistent volume, or every job starts with
            an empty store and the secrets minted by the last one are lost with its container.
          - A store kept in one file (the format of earlier versions) at this path is read as it is and
            turned into the folder by the first write; the file is kept beside it as
            C(<file_path>.single-file-<time>).
          - Falls back to the environment variable E(TOKENOPS_STORE_FILE).
        type: path
        default: ~/.ansible/tokenops/store.vault
      create_folder:
        description:
          - Create the folder that holds O(store.file_path) (mode 0700) when it does not exist.
          - By default a missing folder fails the task before anything is sent, so that a volume that
            failed to mount does not start a new, empty store.
        type: bool
        default: false
      vault_password_file:
        description:
          - File with the password of the C(file) backend (an executable is run and its output
            used, as C(ansible-vault) does).
          - Falls back to the environment variable E(TOKENOPS_VAULT_PASSWORD_FILE) (what the
            collection's AWX credential type sets), then E(ANSIBLE_VAULT_PASSWORD_FILE).
        type: path
      vault_password:
        description:
          - The password of the C(file) backend.
          - Falls back to the environment variable E(TOKENOPS_VAULT_PASSWORD); when set, it is used before any
            O(store.vault_password_file). Read from the environment, it never becomes a module argument, so it
            is not in the module payload Ansible writes to its temporary folder.
        type: str
      url:
        description:
          - Address of the Vault or OpenBao server.
          - Falls back to the environment variable E(VAULT_ADDR).
        type: str
      auth_method:
        description:
          - How to log in to Vault.
          - Falls back to the environment variable E(VAULT_AUTH_METHOD).
        type: str
        choices: [token, approle]
        default: token
      token:
        description:
          - Vault token, for O(store.auth_method=token).
          - Falls back to the environment variable E(VAULT_TOKEN).
        type: str
      role_id:
        description:
          - AppRole role id.
          - Falls back to the environment variable E(VAULT_ROLE_ID).
        type: str
      secret_id:
        description:
          - AppRole secret id.
          - Falls back to the environment variable E(VAULT_SECRET_ID).
        type: str
      approle_mount:
        description: Mount point of the AppRole auth method.
        type: str
        default: approle
      namespace:
        description:
          - Vault Enterprise or OpenBao namespace.
          - Falls back to the environment variable E(VAULT_NAMESPACE).
        type: str
      mount_point:
        description: Mount point of the KV version 2 secrets engine.
        type: str
        default: secret
      ca_cert:
        description:
          - PEM file of the CA that signed the Vault server's certificate.
          - Falls back to the environment variable E(VAULT_CACERT).
        type: path
      validate_certs:
        description: Verify the Vault server's TLS certificate.
        type: bool
        default: true
      timeout:
        description:
          - Seconds to wait for each Vault request, or for a lock of the C(file) backend held by another
            process.
        type: int
        default: 10
"""
