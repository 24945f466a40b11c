"""execution-environment.yml becomes a build context (`ansible-builder create`) that installs this collection and what it imports.

No container is built: the test does what the Containerfile's galaxy and builder stages do, on
the context, with the scripts ansible-builder put in it (install the collection from the context,
then ansible-builder's own introspection of its requirements).
"""

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from conftest import BIN, REPO

pytestmark = pytest.mark.integration

BUILDER = BIN / "ansible-builder"
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
ARTIFACT = "tokenops-rotation-%s.tar.gz" % GALAXY["version"]


def requirement_names(lines):
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~;\[ ]", line, 1)[0].strip().lower().replace("_", "-"))
    return names


def third_party_imports():
    """Top-level modules the collection's plugins import, other than the standard library and Ansible."""
    found = set()
    for path in (REPO / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    # urlparse: the Python 2 fallback of an `except ImportError`
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("ansible", "ansible_collections", "urlparse")}


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    if not BUILDER.exists() and not shutil.which("ansible-builder"):
        pytest.skip("ansible-builder is not installed (pip install -r tests/requirements.txt -c tests/constraints.txt)")
    builder = str(BUILDER) if BUILDER.exists() else shutil.which("ansible-builder")
    work = tmp_path_factory.mktemp("ee")
    # The definition as shipped, beside the artifact `make collection` puts in .build/dist.
    src = work / "src"
    (src / ".build" / "dist").mkdir(parents=True)
    shutil.copy(REPO / "execution-environment.yml", src)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(src / ".build" / "dist"), str(REPO)],
                   check=True, capture_output=True, text=True)
    assert (src / ".build" / "dist" / ARTIFACT).exists(), "execution-environment.yml names %s" % ARTIFACT
    ctx = work / "context"
    proc = subprocess.run([builder, "create", "-f", str(src / "execution-environment.yml"), "-c", str(ctx)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ctx


def test_definition_is_version_3_and_installs_ansible_core_as_the_collection_requires():
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    core = definition["dependencies"]["ansible_core"]["package_pip"]
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    assert core in [line.split("#")[0].strip() for line in requirements]
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert core.replace("ansible-core", "") + ".0" == runtime["requires_ansible"]


def test_context_carries_the_collection_artifact(context):
    build_file = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists())
    text = build_file.read_text()
    assert "ansible-galaxy collection install" in text and "introspect.py introspect" in text
    assert 'ANSIBLE_INSTALL_REFS="ansible-core>=2.16 ansible-runner"' in text
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": "collections/" + ARTIFACT, "type": "file"}]
    with tarfile.open(context / "_build" / "collections" / ARTIFACT) as artifact:
        manifest = json.load(artifact.extractfile("MANIFEST.json"))["collection_info"]
        names = artifact.getnames()
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == ("tokenops", "rotation", GALAXY["version"])
    # What AWX needs from the collection travels with it.
    assert {"extensions/awx/credential_types/das.json", "playbooks/rotate.yml", "meta/execution-environment.yml",
            "requirements.txt", "bindep.txt", "LICENSE"} <= set(names)


def test_builder_stage_finds_every_python_dependency_the_collection_imports(context, tmp_path):
    # The galaxy stage: install from the context, in its _build directory (the Containerfile's WORKDIR /build).
    # As in a fresh image: no other collections path, so nothing counts as installed already.
    collections = tmp_path / "collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp_path / "tmp")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "-p", str(collections)],
                   cwd=str(context / "_build"), env=env, check=True, capture_output=True, text=True, timeout=300)
    assert (collections / "ansible_collections" / "tokenops" / "rotation" / "MANIFEST.json").exists()
    # The builder stage: ansible-builder's introspection of what the installed collections require.
    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    proc = subprocess.run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
                           "--write-pip", str(pip_out), "--write-bindep", str(bindep_out), str(collections)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    introspected = requirement_names(pip_out.read_text().splitlines())
    assert {"requests", "jmespath"} <= introspected and "ansible-core" not in introspected
    # bindep.txt: no system package (introspection writes no file when there is none)
    assert not bindep_out.exists() or requirement_names(bindep_out.read_text().splitlines()) == set()

    # Every third-party module the plugins import comes from one of those, or with ansible-core.
    with_core = requirement_names(importlib.metadata.requires("ansible-core") or [])
    modules = third_party_imports()
    assert {"requests", "jmespath", "cryptography"} <= modules
    distributions = importlib.metadata.packages_distributions()
    for module in modules:
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        assert dists & (introspected | with_core), "%s (from %s) is not installed in the execution environment" % (module, dists)

    # Declared by the collection itself, not only reached through ansible-core's requirements.
    for module in modules:
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        assert dists & introspected, "%s (from %s) is imported but not declared in requirements.txt" % (module, dists)


def test_requirements_declare_every_third_party_import():
    """What the plugins import is declared in requirements.txt (meta/execution-environment.yml hands it to ansible-builder)."""
    declared = requirement_names((REPO / "requirements.txt").read_text().splitlines())
    assert yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())["dependencies"]["python"] == "requirements.txt"
    distributions = importlib.metadata.packages_distributions()
    for module in third_party_imports():
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        assert dists & declared, "%s (from %s) is imported but not declared in requirements.txt" % (module, dists)
