"""`make sanity`: ansible-test sanity on a copy of the tree under ansible_collections/tokenops/rotation/.

ansible-test gives each sanity test its own virtual environment and bootstraps pip in it with a
get-pip.py it downloads from ci-files.testing.ansible.com, a host these machines cannot reach. It
first looks in its cache (~/.ansible/test/cache/get_pip_<version>.py), so this script puts there a
stand-in that bootstraps pip from the interpreter's own ensurepip and then installs the same pinned
pip version from the package index. Everything else ansible-test installs comes from the index too.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Outside the work tree: inside it, git would ignore the copy and ansible-test would see no files. A folder of its own
# per run (removed after it): two checkouts tested at once on one machine must not share, and wipe, one copy.
ROOT = Path(os.environ.get("TOKENOPS_SANITY_DIR") or tempfile.mkdtemp(prefix="tokenops-sanity-"))
COPY = ROOT / "ansible_collections" / "tokenops" / "rotation"

GET_PIP_STAND_IN = '''"""Stand-in for get-pip.py, written by tokenops.rotation's hacking/sanity.py."""
import ensurepip
import os
import ssl
import subprocess
import sys

ensurepip.bootstrap()
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs pip isolated from its configuration; where TLS goes through a local CA, the
# bundled pip must be told the system's CA bundle explicitly.
for cert in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE"),
             ssl.get_default_verify_paths().openssl_cafile):
    if cert and os.path.isfile(cert):
        args = ["--cert", cert] + args
        break
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
'''


def pip_version():
    import ansible_test
    source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
    match = re.search(r"pip='([0-9.]+)'", source)
    if not match:
        sys.exit("cannot find the pip version ansible-test bootstraps; update hacking/sanity.py")
    return match.group(1)


def install_stand_in():
    cache = Path.home() / ".ansible" / "test" / "cache" / ("get_pip_%s.py" % pip_version().replace(".", "_"))
    if not cache.exists() or "tokenops.rotation" in cache.read_text():  # never overwrite a real get-pip.py
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(GET_PIP_STAND_IN)


def copy_tree():
    if ROOT.exists():
        shutil.rmtree(ROOT)
    COPY.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = COPY / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # ansible-test takes its file list from git.
    git = ["git", "-c", "user.name=sanity", "-c", "user.email=sanity@localhost"]
    subprocess.run(git + ["init", "-q"], cwd=COPY, check=True)
    subprocess.run(git + ["add", "-A"], cwd=COPY, check=True)


def main():
    install_stand_in()
    copy_tree()
    python = "%d.%d" % sys.version_info[:2]
    command = [str(Path(sys.executable).parent / "ansible-test"), "sanity", "--python", python, "--requirements", "--color", "no"]
    command += sys.argv[1:]
    try:
        status = subprocess.call(command, cwd=COPY)
    finally:
        if not os.environ.get("TOKENOPS_SANITY_DIR"):
            shutil.rmtree(ROOT, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
