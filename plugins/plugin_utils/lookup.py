# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of this collection's lookups: options checked before anything is read or sent, one error type.

Every failure is an AnsibleLookupError naming the lookup; a bug is reported as "unexpected error"
with its traceback at -vvv, never as a traceback on the console.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.errors import AnsibleError, AnsibleLookupError, AnsibleOptionsError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.tokenops.rotation.plugins.module_utils import validators

display = Display()


class CheckedLookup(LookupBase):
    """Subclasses set NAME and BOOLEAN_OPTIONS and implement checked_run(terms, variables)."""

    NAME = None
    # Ansible's option types take any word for false ("sometimes"): these are checked first.
    BOOLEAN_OPTIONS = ()

    def run(self, terms, variables=None, **kwargs):
        try:
            try:
                for name in self.BOOLEAN_OPTIONS:
                    if name in kwargs:
                        validators.boolean(kwargs[name], name)
                try:
                    self.set_options(var_options=variables, direct=kwargs)
                except AnsibleOptionsError as exc:   # names the option, but echoes its value whole
                    raise ValueError(validators.cut_long_values(to_native(exc), kwargs))
                return self.checked_run(terms, variables)
            except ValueError as exc:
                raise AnsibleLookupError("%s: %s" % (self.NAME, to_native(exc)))
        except AnsibleError:
            raise
        except Exception as exc:  # a bug: reported as one, its traceback at -vvv
            display.vvv(traceback.format_exc())
            raise AnsibleLookupError("%s: unexpected error: %s: %s" % (self.NAME, exc.__class__.__name__, validators.cut(to_native(exc), 300)))

    def checked_run(self, terms, variables):
        raise NotImplementedError
