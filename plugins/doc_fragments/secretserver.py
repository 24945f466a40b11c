# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The Delinea Secret Server connection. List it before tokenops.rotation.connection: the first fragment wins a merge.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - The Secret Server root, with the application path of an on-premises install, for example
        C(https://pam.example.com/SecretServer), or C(https://example.secretservercloud.com).
      - For tokens obtained through the Delinea Platform (C(platform=true)), the platform tenant instead, for example
        C(https://example.delinea.app).
      - Falls back to the environment variable E(TSS_BASE_URL), which the community.general.tss lookup reads too.
"""
