# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input checks every module and lookup shares.

Each check names the option it checks, shows a long value cut short (never a URL's user info),
returns the value normalised, and raises ValueError. They run before any request is sent and
before the store is touched; callers turn the ValueError into their own failure (InputError,
StoreConfigError, AnsibleLookupError).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import math
import os
import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

from ansible.module_utils.common.validation import check_type_dict
from ansible.module_utils.errors import AnsibleFallbackNotFound
from ansible.module_utils.parsing.convert_bool import boolean as to_bool


def env_fallback(*names):
    """Ansible's env_fallback, except that a variable set to an empty or blank value counts as unset.

    An AWX credential field left empty, or `environment: {STYRA_DAS_TOKEN: ""}` in a play (a play cannot
    unset a variable), means "not given", not "given as blank".
    """
    for name in names:
        if os.environ.get(name, "").strip():
            return os.environ[name]
    raise AnsibleFallbackNotFound


# A value longer than this is shown as its first SHOWN characters and its length.
SHOWN = 60
# Durations past this overflow the date arithmetic of a rotation (datetime ends in year 9999).
MAX_DURATION = 100 * 365 * 86400
MAX_TIMEOUT = 86400
URL_WHAT = "an http or https URL such as https://host.example.com"

_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BRACKETED_NETLOC = re.compile(r"^\[[^\]]+\](:\d+)?$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


# ---------------------------------------------------------------- how a value is shown

def shown(value, limit=SHOWN):
    """The value as a message shows it: quoted, and cut to `limit` characters with its length when longer."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        return "%r... (%d characters)" % (text[:limit], len(text))
    return repr(value)


def kind_of(value):
    """'a string', 'a number', 'null', ... for messages about a wrong type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a dictionary"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a %s" % type(value).__name__


def cut_long_values(message, values, keep=()):
    """`message` with every long string of `values` (a nested dict/list) shown cut short.

    For messages built elsewhere (Ansible's own argument checks echo a bad value whole). Strings in
    `keep` (no_log values, which Ansible masks whole) and strings that contain one are left alone, so
    a cut never turns a masked secret into a visible prefix.
    """
    if not isinstance(message, str):
        return message
    long_values = set()
    _long_strings(values, long_values, 2 * SHOWN)
    keep = [k for k in keep if isinstance(k, str) and k]
    for value in sorted(long_values, key=len, reverse=True):
        if value in message and not any(k in value for k in keep):
            message = message.replace(value, cut(value))
    return message


def cut(value, limit=SHOWN):
    """A text for a message as it is, or its first `limit` characters and its length when longer."""
    value = value if isinstance(value, str) else repr(value)
    return value if len(value) <= limit else "%s... (%d characters)" % (value[:limit], len(value))


def _long_strings(value, out, limit, depth=0):
    if depth > 20:
        return
    if isinstance(value, str):
        if len(value) > limit:
            out.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _long_strings(item, out, limit, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _long_strings(item, out, limit, depth + 1)


def shape_error(argument_spec, params, prefix=""):
    """A message naming the option when a dictionary option, or an item of a list of dictionaries, is not one.

    Ansible's own message for these names no option ("dictionary requested, could not parse JSON or
    key=value"); None when the shape is right.
    """
    for name, opts in (argument_spec or {}).items():
        value = (params or {}).get(name) if isinstance(params, dict) else None
        if value is None or not isinstance(opts, dict):
            continue
        wanted, elements, options = opts.get("type"), opts.get("elements"), opts.get("options")
        if wanted == "list" and elements == "dict" and isinstance(value, list):
            values = [("%s%s[%d]" % (prefix, name, index), item) for index, item in enumerate(value)]
        elif wanted == "dict":
            values = [("%s%s" % (prefix, name), value)]
        else:
            continue
        for where, item in values:
            if isinstance(item, str):
                try:
                    item = check_type_dict(item)
                except (TypeError, ValueError):
                    pass
            if not isinstance(item, dict):
                keys = ", ".join(sorted(options)) if options else None
                # the value is not shown: a secret put in the wrong place must not be echoed
                return "%s must be a dictionary%s, got %s" % (where, " with %s" % cut(keys) if keys else "", kind_of(item))
            if options:
                error = shape_error(options, item, where + ".")
                if error:
                    return error
    return None


# ---------------------------------------------------------------- checks

def text(value, name, required=True, blank=False, secret=False):
    """A string option: a str without control characters, not blank unless `blank`. None passes unless required.

    With `secret` the value is never shown.
    """
    if value is None:
        if required:
            raise ValueError("%s is required" % name)
        return None
    if not isinstance(value, str):
        if secret:
            raise ValueError("%s must be a string, got %s" % (name, kind_of(value)))
        raise ValueError("%s must be a string, got %s (%s)" % (name, kind_of(value), shown(value)))
    if not blank and not value.strip():
        raise ValueError("%s must not be empty or blank" % name)
    if _CONTROL.search(value):
        if secret:
            raise ValueError("%s must not contain control characters (a line break copied with it?)" % name)
        raise ValueError("%s must not contain control characters, got %s" % (name, shown(value)))
    return value


def username(value, name="username"):
    """A user name sent to a product: not blank, no surrounding blanks, no control characters."""
    value = text(value, name)
    if value != value.strip():
        raise ValueError("%s %s has blanks around it; give the user name exactly" % (name, shown(value)))
    return value


def url(value, name="url", what=URL_WHAT, query=False):
    """An http(s) URL with a host: no user info, no fragment, no query unless `query`, a valid port and IPv6 literal.

    `what` says what the URL must be ("the DPA server as http(s)://host:port"). Returns the URL
    without surrounding blanks. Messages never repeat a URL's user info.
    """
    if value is None:
        raise ValueError("%s is required: %s" % (name, what))
    if not isinstance(value, str):
        raise ValueError("%s must be %s; got %s (%s)" % (name, what, kind_of(value), shown(value)))
    stripped = value.strip(" ")
    # user info may hold a password: a URL with '@' is not repeated
    safe = shown(stripped) if "@" not in stripped else "a URL with user info (not shown)"
    if not stripped:
        raise ValueError("%s is empty; it must be %s" % (name, what))
    if _CONTROL_OR_SPACE.search(stripped):   # a line break copied with it included
        raise ValueError("%s must not contain blanks or control characters; got %s" % (name, safe))
    try:
        parts = urlsplit(stripped)
    except ValueError as exc:   # "Invalid IPv6 URL", a bracketed host that is no IPv6 address
        raise ValueError("%s %s is not a valid URL (%s); it must be %s" % (name, safe, exc, what))
    if parts.scheme not in ("http", "https") or not stripped.lower().startswith(parts.scheme + "://"):
        raise ValueError("%s must be %s; got %s" % (name, what, safe))
    if "@" in parts.netloc:
        raise ValueError("%s must not carry a user name or password (user info before '@'); give credentials in their own options" % name)
    if "#" in stripped:
        raise ValueError("%s must not have a fragment ('#...'); got %s" % (name, safe))
    if not query and "?" in stripped:
        raise ValueError("%s must not have a query ('?...'); got %s; it must be %s" % (name, safe, what))
    host = parts.hostname
    if not host:
        raise ValueError("%s %s has no host; it must be %s" % (name, safe, what))
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("%s %s has a port that is not a number from 1 to 65535" % (name, safe))
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("%s %s has a bracketed host that is not an IPv6 address" % (name, safe))
        if not _BRACKETED_NETLOC.match(parts.netloc):
            raise ValueError("%s %s has something after its bracketed IPv6 address that is not ':port'" % (name, safe))
    else:
        _check_host_name(host, name, safe)
    return stripped


def _check_host_name(host, name, safe):
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("%s %s has a host name that is not valid (empty or over-long labels)" % (name, safe))
    labels = encoded.rstrip(".").split(".")
    if len(encoded) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError("%s %s has a host name that is not valid: use letters, digits, '-' and '.'" % (name, safe))


def duration(value, name, required=True):
    """A duration option (90d, 24h, 1h30m, 45s or seconds) -> seconds; never empty, negative or absurdly long."""
    # rotation.py imports the store, which imports this module: import it when first needed.
    from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import parse_duration

    if value is None:
        if required:
            raise ValueError("%s is required: a duration such as 24h, 7d or 90m" % name)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("%s must be a duration such as 24h, 7d or 90m, got %s (%s)" % (name, kind_of(value), shown(value)))
    if isinstance(value, str) and not value.strip():
        raise ValueError("%s is empty; give a duration such as 24h, 7d or 90m, or leave it out" % name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("%s must be a finite duration, got %s" % (name, shown(value)))
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError("%s must not be negative, got %s" % (name, shown(value)))
    try:
        seconds = parse_duration(value, name)
    except ValueError:
        raise ValueError("%s: %s is not a duration; use a number of seconds or units such as 90d, 24h, 1h30m, 45s"
                         % (name, shown(value)))
    if seconds > MAX_DURATION:
        raise ValueError("%s %s is longer than 100 years" % (name, shown(value)))
    return seconds


def positive_duration(value, name, required=True):
    """A duration greater than 0."""
    seconds = duration(value, name, required=required)
    if seconds is not None and seconds <= 0:
        raise ValueError("%s must be greater than 0, got %s" % (name, shown(value)))
    return seconds


def rotate_before(value, name="rotate_before"):
    """A duration or a percentage of the lifetime ('20%') -> ('seconds'|'percent', number); never empty."""
    from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import parse_rotate_before

    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise ValueError("%s is empty; give a duration such as 7d or a percentage of the lifetime such as 20%%" % name)
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return parse_rotate_before(value, name)
        except ValueError:
            raise ValueError("%s: %s is not a percentage from 0%% to 100%%" % (name, shown(value)))
    return ("seconds", duration(value, name))


def timeout(value, name="timeout", maximum=MAX_TIMEOUT):
    """Seconds to wait: a finite number greater than 0 and at most `maximum`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError("%s must be a number of seconds, got %s" % (name, shown(value)))
        else:
            raise ValueError("%s must be a number of seconds, got %s (%s)" % (name, kind_of(value), shown(value)))
    if not math.isfinite(value) or value <= 0:
        raise ValueError("%s must be a number of seconds greater than 0, got %s" % (name, shown(value)))
    if value > maximum:
        raise ValueError("%s must be at most %d seconds, got %s" % (name, maximum, shown(value)))
    return value


def count(value, name, minimum=0, maximum=None):
    """A whole number within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s must be a whole number, got %s (%s)" % (name, kind_of(value), shown(value)))
    if value < minimum:
        raise ValueError("%s must be %d or more, got %d" % (name, minimum, value))
    if maximum is not None and value > maximum:
        raise ValueError("%s must be at most %d, got %s" % (name, maximum, shown(value)))
    return value


def boolean(value, name):
    """true or false, or what Ansible takes for them ('yes', 'off', 1, ...); nothing else."""
    try:
        return to_bool(value, strict=True)
    except TypeError:
        raise ValueError("%s must be true or false, got %s (%s)" % (name, kind_of(value), shown(value)))


def items(value, name, kind, what, required=False):
    """A list whose every item is of `kind` (a type or tuple), described as `what` ('a dictionary')."""
    if value is None:
        if required:
            raise ValueError("%s is required" % name)
        return None
    if not isinstance(value, list):
        raise ValueError("%s must be a list, got %s (%s)" % (name, kind_of(value), shown(value)))
    for index, item in enumerate(value):
        if isinstance(item, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ValueError("%s[%d] must be %s, got a boolean (%s)" % (name, index, what, shown(item)))
        if not isinstance(item, kind):
            raise ValueError("%s[%d] must be %s, got %s (%s)" % (name, index, what, kind_of(item), shown(item)))
    return value


def strings(value, name, required=False):
    """A list of non-blank strings."""
    value = items(value, name, str, "a string", required=required)
    for index, item in enumerate(value or []):
        text(item, "%s[%d]" % (name, index))
    return value


def readable_file(value, name, required=False):
    """A file that exists and can be read (a CA bundle, a key); returns its path with ~ expanded."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError("%s is required" % name)
        if value is None:
            return None
        raise ValueError("%s is empty; give the path of a file, or leave it out" % name)
    if not isinstance(value, str):
        raise ValueError("%s must be the path of a file, got %s (%s)" % (name, kind_of(value), shown(value)))
    if _CONTROL.search(value):
        raise ValueError("%s %s must not contain control characters" % (name, shown(value)))
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise ValueError("%s %s does not exist or is not a file" % (name, shown(value)))
    if not os.access(path, os.R_OK):
        raise ValueError("%s %s is not readable" % (name, shown(value)))
    return path
