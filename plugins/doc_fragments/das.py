# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The Styra DAS connection. List it before tokenops.rotation.connection: the first fragment wins a merge.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - The DAS tenant, for example C(https://example.styra.com) (EU tenants C(https://example.svc.styra.com)).
      - Falls back to the environment variable E(STYRA_DAS_URL).
  api_token:
    description:
      - Secret of a DAS token with the rights the task needs.
      - Falls back to the environment variable E(STYRA_DAS_TOKEN).
    type: str
"""
