"""What `azd deploy` would upload as the Function App package.

azd (1.18.0 on) builds the zip of a Function App by walking the project folder and leaving out:
`.azure/`, the ignore file itself, `local.settings.json`, and whatever `.funcignore` matches with
gitignore semantics; a directory left out is not walked. Once a `.funcignore` exists azd neither reads
.gitignore nor applies its own defaults (such as `.venv`). This walks a copy of the project the same
way, with secrets and local state planted in it, and fails on any that would be uploaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Copying these would only be slow; every one of them must be excluded, which is checked below by
# planting a small one of each.
_NOT_COPIED = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
_NOT_COPIED |= {"__pycache__", ".sandbox", ".azure", "pal_autopilot.egg-info"}
# A developer's real secrets stay where they are; the test plants its own.
_NOT_COPIED |= {".env", "local.settings.json"}


def package_files(root: Path) -> set[str]:
    """The paths (relative, POSIX) azd would put in the zip, the way its createDeployableZip does."""
    ignore_file = root / ".funcignore"
    lines = ignore_file.read_text(encoding="utf-8-sig").splitlines() if ignore_file.exists() else []
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    included: set[str] = set()

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            relative = entry.relative_to(root).as_posix()
            is_dir = entry.is_dir()
            if entry.name == ".azure" and is_dir:
                continue
            if entry.name in {".funcignore", "local.settings.json"} and not is_dir:
                continue
            if spec.match_file(relative + ("/" if is_dir else "")):
                continue
            if is_dir:
                walk(entry)
            else:
                included.add(relative)

    walk(root)
    return included


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("project") / "pal-autopilot"
    shutil.copytree(
        ROOT, copy, ignore=lambda _dir, names: [n for n in names if n in _NOT_COPIED], symlinks=True
    )
    return copy


# Files that hold secrets or local state, at the root and deeper down. None may be uploaded.
PLANTED = [
    ".env",
    ".env.local",
    "shared/.env",
    "partner-app.pem",
    "functions/customer.key",
    "certs/partner.pfx",
    "client.pfx",
    ".sandbox/cloud/state.json",
    ".sandbox/ca/ca.pem",
    "__azurite_db_blob__.json",
    "__azurite_db_blob_extent__.json",
    "__azurite_db_queue__.json",
    "__azurite_db_table__.json",
    "__blobstorage__/container/blob",
    "__queuestorage__/queue/message",
    "AzuriteConfig",
    "local.settings.json",
    ".azure/pal-prod/.env",
    ".venv/pyvenv.cfg",
    "node_modules/azurite/package.json",
    "shared/__pycache__/settings.cpython-311.pyc",
    ".hypothesis/examples/abc",
    ".pytest_cache/v/cache/lastfailed",
    ".git/config",
]


def test_the_package_holds_no_secret_and_no_local_state(project: Path) -> None:
    for relative in PLANTED:
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not for Azure\n")
    uploaded = package_files(project)
    leaked = sorted(relative for relative in PLANTED if relative in uploaded)
    assert not leaked, f".funcignore lets these into the deployed package: {leaked}"
    assert not any(
        part.startswith(".") and part not in {".funcignore"} for name in uploaded for part in name.split("/")
    ), sorted(name for name in uploaded if "/." in "/" + name)


def test_the_package_holds_what_the_function_app_runs(project: Path) -> None:
    uploaded = package_files(project)
    assert {"function_app.py", "host.json", "requirements.txt"} <= uploaded
    for package in ("shared", "functions"):
        sources = {
            path.relative_to(project).as_posix()
            for path in (project / package).rglob("*.py")
            if "__pycache__" not in path.parts
        }
        assert sources and sources <= uploaded, sorted(sources - uploaded)
    # The dashboard's page and its modules are served from the package (shared/dashboard/page.py).
    page = {path.relative_to(project).as_posix() for path in (project / "dashboard").iterdir()}
    assert page and page <= uploaded, sorted(page - uploaded)
    # Nothing of the tool-chain, tests, sandbox or infrastructure goes to Azure.
    for prefix in ("tests/", "sandbox/", "infra/", "docs/", "palctl/", "bench/", "api/", ".ci/"):
        assert not [name for name in uploaded if name.startswith(prefix)], prefix


def test_the_walk_applies_gitignore_semantics(tmp_path: Path) -> None:
    # The check above is only as good as this imitation of azd's walk.
    (tmp_path / ".funcignore").write_text("*.pem\nsecret/\n/rootonly\n")
    for relative in (
        "a.pem",
        "deep/b.pem",
        "secret/x",
        "deep/secret/y",
        "rootonly",
        "deep/rootonly",
        "keep.py",
    ):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    (tmp_path / "local.settings.json").write_text("{}")
    assert package_files(tmp_path) == {"deep/rootonly", "keep.py"}


def test_the_copy_is_of_this_project(project: Path) -> None:
    assert (project / ".funcignore").read_bytes() == (ROOT / ".funcignore").read_bytes()
    assert not os.path.samefile(project, ROOT)
