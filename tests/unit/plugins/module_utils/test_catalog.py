"""catalog.read_token_list: the token list of a tokens_file, or a ValueError that names the file and what is wrong."""

import os

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import catalog


@pytest.mark.parametrize("text", ['[{"id": "a"}, {"id": "b"}]', '{"tokens": [{"id": "a"}, {"id": "b"}]}',
                                  "- id: a\n- id: b\n", "tokens:\n  - id: a\n  - id: b\n", "# a YAML comment\n- {id: a}\n- {id: b}\n",
                                  "[{id: a}, {id: b}]  # JSON-looking YAML\n"])
def test_json_or_yaml_a_list_or_under_tokens(tmp_path, text):
    path = tmp_path / "tokens"
    path.write_text(text)
    assert catalog.read_token_list(str(path)) == [{"id": "a"}, {"id": "b"}]


def test_home_and_variables_are_expanded(tmp_path, monkeypatch):
    (tmp_path / "t.yml").write_text("- id: a\n")
    monkeypatch.setenv("CATALOG_DIR", str(tmp_path))
    assert catalog.read_token_list("$CATALOG_DIR/t.yml") == [{"id": "a"}]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert catalog.read_token_list("~/t.yml") == [{"id": "a"}]


@pytest.mark.parametrize("text, expected", [
    ("", "must hold a list of tokens (or a mapping whose `tokens` is that list), not nothing"),
    ("id: a\n", "must hold a list of tokens (or a mapping whose `tokens` is that list), not dict"),
    ("just a word", "not str"),
    ("tokens: [unclosed", "is not valid YAML"),
    ("[{\"id\": \"a\"},", "is neither JSON nor YAML"),
])
def test_what_is_wrong_is_named(tmp_path, text, expected):
    path = tmp_path / "tokens.yml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        catalog.read_token_list(str(path))
    assert expected in str(err.value) and str(path) in str(err.value) and str(err.value).startswith("tokens_file: ")


def test_unreadable_and_not_utf8(tmp_path):
    with pytest.raises(ValueError, match="cannot read .*No such file"):
        catalog.read_token_list(str(tmp_path / "gone.yml"))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe- id: a\n")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        catalog.read_token_list(str(binary))
    with pytest.raises(ValueError, match="tokens_file must be the path"):
        catalog.read_token_list("  ")
    if os.geteuid() != 0:
        locked = tmp_path / "locked.yml"
        locked.write_text("- id: a\n")
        locked.chmod(0)
        with pytest.raises(ValueError, match="Permission denied"):
            catalog.read_token_list(str(locked))


def test_ids_name_items_by_id_or_username():
    assert catalog.token_ids([{"id": "a"}, {"username": "svc"}, {"id": "", "username": "u2"}, "junk", {}]) == ["a", "svc", "u2"]
