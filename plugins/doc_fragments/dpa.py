# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The SolarWinds DPA connection. List it before tokenops.rotation.connection: the first fragment wins a merge.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - The DPA server, for example C(https://dpa.example.com:8124). The API path C(/iwc/api) is
        added unless the URL ends with it.
      - DPA servers often have a self-signed certificate; give its CA with O(ca_path) rather than
        turning O(validate_certs) off.
      - Falls back to the environment variable E(DPA_URL).
"""

    # When a refresh token's expiry is reported: shared by dpa_refresh_token and dpa_refresh_token_info.
    EXPIRY = r"""
options:
  warn_before:
    description:
      - Warn when the refresh token expires within this duration (C(30d), C(72h), C(1h30m), or seconds).
      - DPA cannot renew a refresh token through its API, so the warning gives a person time to
        create a new one in the web interface.
      - Empty for no warning.
    type: str
    default: 30d
  fail_before:
    description:
      - Fail when the refresh token expires within this duration, so that a scheduled run turns
        red while the token still works. An expired token always fails.
      - Empty to never fail before expiry.
    type: str
    default: 7d
"""
