"""Shared test set-up: import paths for the collection, the simulators and OpenBao."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEV_COLLECTIONS = REPO / ".build" / "collections"


def _dev_collection_link():
    """`ansible_collections.tokenops.rotation` importable from the work tree, for unit tests."""
    link = DEV_COLLECTIONS / "ansible_collections" / "tokenops" / "rotation"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(REPO, link.parent))
        except FileExistsError:  # another test process made it first
            pass
    return DEV_COLLECTIONS


for path in (str(REPO), str(_dev_collection_link())):
    if path not in sys.path:
        sys.path.insert(0, path)
