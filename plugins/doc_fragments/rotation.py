# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # When a token is due: the policy every token module shares.
    DOCUMENTATION = r"""
options:
  rotate_before:
    description:
      - Rotate when less than this is left before the token expires.
      - A duration (C(90d), C(24h), C(1h30m), C(45s), or a number of seconds), or a percentage of
        the token's lifetime (C(20%)).
    type: str
    default: 20%
  max_age:
    description:
      - Rotate when the secret is older than this duration, whatever its expiry.
    type: str
"""

    # The options of the modules that change things (the *_info modules do not take them).
    RUN = r"""
options:
  lock_timeout:
    description:
      - How long another run's rotation intent in the store keeps this run away.
      - An intent older than this, or one whose process on this host is gone, is taken over and
        recovered.
    type: str
    default: 5m
  lease:
    description:
      - How long a rotation intent stays valid without being renewed. A live run renews the
        lease of each intent it holds; an intent whose lease ran out belongs to a run that died
        (on any host, for example an AWX job killed on another execution node) and is taken
        over by the next run.
    type: str
    default: 60s
  return_secret:
    description:
      - Return the current secret in the result (as C(secret)).
      - The task must set C(no_log=true), so that Ansible hides the result; the module refuses
        otherwise. Consumers should rather read the secret from the store (the
        C(tokenops.rotation.token) lookup).
    type: bool
    default: false
  concurrency:
    description:
      - How many tokens of one task are handled at the same time, from 1 to 256.
      - The work waits on the product's API and the store, not on the controller's CPU, so the
        default suits a 2-core controller; lower it for an API that limits concurrent requests.
      - It is a ceiling. The requests in flight to each store or product endpoint adapt below it, fewer
        when answers slow down, time out or come back 429, more again when they recover; the forks
        of a job share each endpoint's limit (see the README, "A slow or rate-limiting store or product").
    type: int
    default: 16
  report_spool:
    description:
      - A file the module also writes its result to (every token's result, without secrets, as JSON),
        for the report of a scheduled job to read instead of the task result.
      - Playbook C(tokenops.rotation.rotate) sets it through the product roles, so that neither the
        roles nor the report play template a structure as large as the fleet.
      - Its folder must exist. The file is written to a temporary file in that folder and renamed.
      - At default verbosity the task result then keeps in C(results) only the tokens that failed,
        need a person or were held by another run, and says how many results the file has
        (C(results_spooled)); DAS's C(audit) is only in the file. With C(-v) the result has them all.
    type: path
  tokens_file:
    description:
      - A file that lists the tokens, read by the module itself in place of O(tokens). JSON or YAML, a list of
        the items O(tokens) takes, or a mapping whose C(tokens) is that list.
      - For large fleets. A list of 10,000 tokens in the inventory costs Ansible more than the modules
        do (it parses, copies and templates it for every task, and sends it as the module's arguments); a
        file costs one read. The task result names the file instead of repeating the list.
      - Every item gets the same checks as an item of O(tokens), before any request is sent; a message about
        an item names the file.
      - Read on the host that runs the module (the controller, for this collection's roles). Use an absolute
        path; a relative one is taken from the folder the module runs in.
      - Mutually exclusive with O(tokens) and with the options that name a single token.
      - Secret fields of the items (a DPA C(refresh_token), a Secret Server C(password)) are hidden from
        the output as they are in O(tokens); keep such a file readable by the job's user only, or leave
        the secrets out and give them through the environment.
    type: path
notes:
  - The store is the lock. A rotation writes its intent to the store entry (check-and-set) before
    it asks the product for a new secret, and writes the new secret to the store before it does
    anything else. A second run that finds the intent backs off; a run that finds an intent whose
    holder died recovers it.
  - Check mode reads the product and the store and reports what a real run would do; it never
    writes to either.
  - Diff mode shows fingerprints (C(sha256:) and 12 hex digits), times and ids, never a secret.
"""
