"""tokens_file: a product module reads its token list from a file (JSON or YAML) instead of the `tokens` option.

The items get the same checks as `tokens` items (and their secret fields the same no_log), before any request; a file
that cannot be used is bad input with a message that names the file; the result names the file instead of repeating
the list as the module's arguments.
"""

import json

import pytest
import yaml

from conftest import das_env, das_task
from dpa_fixtures import dpa_task, record_of
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration


def das_item(token_id):
    return {"id": token_id, "description": token_id, "allow_path_patterns": ["^/v1/systems/%s/.*" % token_id], "ttl": "24h"}


def run(runner, task, env):
    result = runner.run([task], env=env)
    assert result.results, result
    return result.result


@pytest.mark.parametrize("form", ["yaml list", "yaml mapping", "json list"])
def test_das_tokens_from_a_file(runner, das, file_store, tmp_path, form):
    items = [das_item("one"), das_item("two")]
    path = tmp_path / ("tokens.json" if form.startswith("json") else "tokens.yml")
    path.write_text(json.dumps(items) if form.startswith("json") else yaml.safe_dump({"tokens": items} if "mapping" in form else items))
    result = run(runner, das_task(das, file_store, tokens_file=str(path)), das_env(das, file_store))
    assert not result["failed"] and [r["action"] for r in result["results"]] == ["created", "created"], result
    assert das.sim.secret_works(file_store.entry("das", das.host, "two")["secret"])
    args = result["invocation"]["module_args"]
    assert args["tokens"] == "2 token(s) from tokens_file %s" % path and args["tokens_file"] == str(path), args
    again = run(runner, das_task(das, file_store, tokens_file=str(path)), das_env(das, file_store))
    assert [r["action"] for r in again["results"]] == ["none", "none"] and not again["changed"], again


def test_dpa_secrets_in_a_file_are_hidden_as_in_tokens(runner, dpa, file_store, tmp_path):
    token = dpa.issue("reporting")
    path = tmp_path / "dpa.yml"
    path.write_text(yaml.safe_dump([{"id": "reporting", "refresh_token": token}]))
    result = run(runner, dpa_task(dpa, file_store, tokens_file=str(path)), dict(file_store.env))
    assert result["results"][0]["action"] == "created" and record_of(file_store, dpa)["secret"] == token, result
    assert token not in json.dumps(result), "the refresh token from the file is in the result"


BAD = {
    "missing": (None, "tokens_file: cannot read {path}: No such file or directory"),
    "a mapping without tokens": ({"token": [{"id": "x"}]}, "tokens_file: {path} must hold a list of tokens"),
    "not YAML": ("tokens: [unclosed\n", "tokens_file: {path} is not valid YAML"),
    "empty": ("", "must hold a list of tokens (or a mapping whose `tokens` is that list), not nothing"),
    "an item without id": ([{"refresh_token_env": "DPA_REFRESH_TOKEN"}], "(the tokens were read from tokens_file {path})"),
    "an item that is no mapping": (["reporting"], "(the tokens were read from tokens_file {path})"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_file_that_cannot_be_used_is_bad_input(runner, dpa, file_store, tmp_path, case):
    content, expected = BAD[case]
    path = tmp_path / "tokens.yml"
    if content is not None:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    dpa.sim.reset_counts()
    writes = file_store.writes()
    result = run(runner, dpa_task(dpa, file_store, tokens_file=str(path)), dict(file_store.env))
    assert result["failed"] and expected.format(path=path) in result["msg"], result
    assert "Traceback" not in result["msg"] and not result.get("exception"), result
    assert dpa.sim.count() == 0 and file_store.writes() == writes, "a request was sent for bad input"


@pytest.mark.parametrize("clash", ["tokens", "id", "refresh_token"])
def test_tokens_file_with_an_option_that_lists_or_names_a_token(runner, dpa, file_store, tmp_path, clash):
    path = tmp_path / "tokens.yml"
    path.write_text(yaml.safe_dump([{"id": "reporting"}]))
    value = {"tokens": [{"id": "other"}], "id": "other", "refresh_token": dpa.issue("other")}[clash]
    dpa.sim.reset_counts()
    result = run(runner, dpa_task(dpa, file_store, tokens_file=str(path), **{clash: value}), dict(file_store.env))
    assert result["failed"] and "tokens_file and %s are mutually exclusive" % clash in result["msg"], result
    assert dpa.sim.count() == 0
