# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The product API connection, shared by every token module.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the product API, for example C(https://tenant.styra.com).
      - An http or https URL with a host; no query string, fragment or user name and password.
      - Each module names the environment variable it falls back to.
    type: str
    required: true
  validate_certs:
    description:
      - Verify the server's TLS certificate. Turn it off only for a test server.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the certificate authority that signed the server's certificate,
        for servers with a private or self-signed CA. Implies certificate validation.
      - The file must exist and be readable; this is checked before any request.
    type: path
  timeout:
    description:
      - Seconds to wait for each API request, more than 0 and at most 86400.
    type: float
    default: 30
  retries:
    description:
      - How often a safe request (a read, or a write the product makes idempotent) is retried
        on HTTP 429, 502, 503, 504 or a connection error, with exponential backoff and
        honouring C(Retry-After). A request that mints a secret is never retried.
      - From 0 to 100.
    type: int
    default: 3
"""
