"""The sdist and the wheel: built as a release would be, installed in a fresh virtual environment,
run there.

``python -m build`` makes the sdist from this tree, then the wheel from the unpacked sdist, so a
file the sdist lacks fails the build here. It runs ``--no-isolation``, on the setuptools of the
environment running the tests (the dev extra requires a recent enough one): no registry is asked,
and the build takes seconds. Where that setuptools is too old the build is isolated instead
(it then needs the package registry).

The fresh environment and ratingrl's dependencies: installing torch, MuJoCo, Ray and the rest from
the registry into a new venv takes minutes and needs the network, and there are no wheels of
them on disk to install from offline. So the new venv (``python -m venv --without-pip``) gets
ratingrl only from the wheel (pip's ``--python`` installs into it, ``--no-deps --no-index``), and
its dependencies from the site-packages of the environment running the tests, listed in a
``.pth`` file as plain paths. Python appends such paths *after* the venv's own site-packages and
does not read the ``.pth`` files inside them, so the editable install of ratingrl there (a
``.pth`` pointing at ``src/``) is invisible: ``import ratingrl`` can only find the wheel's copy.
The test checks this (``ratingrl.__file__`` is inside the new venv) rather than trust it.
(``--system-site-packages`` would not do: it shows the site-packages of the base interpreter,
and the dependencies live in ``.venv``, itself a venv.) The build and the venv take ~6 s on
an idle machine, ~20 s on a busy one: marked slow (``make test-fast`` leaves them out).
"""

from __future__ import annotations

import email
import json
import os
import site
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ratingrl
from ratingrl.app.schema import head_revision
from ratingrl.cli import app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ratingrl"
BUILD_SETUPTOOLS = (77,)  # pyproject.toml's [build-system] requires setuptools>=77
SDIST_REQUIRED = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "Makefile",
                  "MANIFEST.in", "tests/conftest.py", "tests/test_wheel.py")  # fmt: skip
SDIST_EXCLUDED_DIRS = (".venv", "runs", "reports", "dist", "build", "benchmarks/results", ".git")
SDIST_MAX_FILE_BYTES = 2 << 20  # a figure or a test's run folder fits; a sweep's outputs do not


def package_files() -> list[str]:
    """Every file of the package in this tree, relative to ``src/`` (bytecode left out)."""
    return sorted(
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def _setuptools_new_enough() -> bool:
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    return tuple(int(part) for part in version.split(".")[:1]) >= BUILD_SETUPTOOLS


def _run(args: list, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run a command with a clean Python environment; fail with its output if it fails."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    clean.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", **env)
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=clean, capture_output=True,
                            text=True, timeout=timeout)  # fmt: skip
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{output}"
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict:
    """The sdist and the wheel ``python -m build`` makes of this tree (wheel from the sdist).

    ``must`` / ``may`` are the package's files that were there before and after the build /
    before or after it: the tree may change while the build runs (someone editing it).
    """
    out = tmp_path_factory.mktemp("dist")
    isolation = ["--no-isolation"] if _setuptools_new_enough() else []
    before = set(package_files())
    _run([sys.executable, "-m", "build", *isolation, "--outdir", out, ROOT], cwd=out, timeout=300)
    after = set(package_files())
    (wheel,) = out.glob("ratingrl-*.whl")
    (sdist,) = out.glob("ratingrl-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "must": before & after, "may": before | after}


def test_version_flag_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"ratingrl {ratingrl.__version__}\n"


@pytest.mark.slow
def test_wheel_holds_the_package_and_its_data_files(dists):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        info = f"ratingrl-{ratingrl.__version__}.dist-info"
        meta = email.message_from_string(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    # every file under src/ratingrl, data files included (static, migrations, claims.toml) ...
    packaged = {n for n in names if n.startswith("ratingrl/")}
    assert dists["must"] <= packaged, sorted(dists["must"] - packaged)
    assert packaged <= dists["may"], sorted(packaged - dists["may"])
    # ... and nothing else but the metadata (no tests, no top-level strays)
    assert {n.split("/")[0] for n in names} == {"ratingrl", info}
    assert meta["Name"] == "ratingrl"
    assert meta["Version"] == ratingrl.__version__
    assert meta["License-Expression"] == "MIT"
    assert f"{info}/licenses/LICENSE" in names
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == (ROOT / "README.md").read_text().strip()
    assert "ratingrl = ratingrl.cli:app" in entry_points


@pytest.mark.slow
def test_sdist_holds_what_builds_and_tests_and_no_run_outputs(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        members = [m for m in sdist.getmembers() if m.isfile()]
    prefix = f"ratingrl-{ratingrl.__version__}/"
    assert all(m.name.startswith(prefix) for m in members)
    files = {m.name.removeprefix(prefix): m.size for m in members}
    for name in SDIST_REQUIRED:
        assert name in files, name
    for folder in ("examples", "tests", "scripts"):
        tracked = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip
        assert tracked <= set(files), sorted(tracked - set(files))
    assert dists["must"] <= {n.removeprefix("src/") for n in files}
    for name in files:
        assert not name.startswith(tuple(d + "/" for d in SDIST_EXCLUDED_DIRS)), name
        assert "__pycache__" not in name and not name.endswith(".pyc"), name
    big = {name: size for name, size in files.items() if size > SDIST_MAX_FILE_BYTES}
    assert not big, big


INSTALLED_CHECK = """
import json, sqlite3, sys, tempfile
from pathlib import Path
from fastapi.testclient import TestClient
import ratingrl
from ratingrl.app import server
from ratingrl.app.schema import head_revision, upgrade_database
from ratingrl.experiments.claims import load_claims

tmp = Path(tempfile.mkdtemp())
upgrade = upgrade_database(f"sqlite:///{tmp / 'fresh.db'}")
with sqlite3.connect(tmp / "fresh.db") as db:
    stored = db.execute("SELECT version_num FROM alembic_version").fetchall()
app = server.create_app(f"sqlite:///{tmp / 'app.db'}", tmp / "clips", "operator-token-123")
with TestClient(app) as client:
    pages = {path: client.get(path) for path in ("/", "/operator", "/pairs")}
static = server.STATIC_DIR
print(json.dumps({
    "file": ratingrl.__file__,
    "version": ratingrl.__version__,
    "head": head_revision(),
    "upgrade": [upgrade.before, upgrade.after],
    "stored": stored,
    "static": sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file()),
    "pages": {path: [r.status_code, r.text] for path, r in pages.items()},
    "claims": len(load_claims()),
}))
"""


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with ratingrl from ``wheel`` alone and the dependencies of this environment."""
    _run([sys.executable, "-m", "venv", "--without-pip", where], cwd=where.parent)
    python = where / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--no-cache-dir", "--disable-pip-version-check", wheel], cwd=where.parent)  # fmt: skip
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=where.parent).stdout.strip()  # fmt: skip
    base = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "_ratingrl_test_dependencies.pth").write_text("\n".join(base) + "\n")
    return python


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_venv(dists, tmp_path):
    venv = tmp_path / "venv"
    python = _fresh_venv(venv, dists["wheel"])
    work = tmp_path / "work"  # not the repository: nothing importable beside the script
    work.mkdir()

    version = _run([venv / "bin" / "ratingrl", "--version"], cwd=work)
    assert version.stdout == f"ratingrl {ratingrl.__version__}\n"
    helped = _run([venv / "bin" / "ratingrl", "--help"], cwd=work, COLUMNS="200")
    for command in ("train", "serve", "app", "sweep", "report"):
        assert f" {command} " in helped.stdout, command

    found = json.loads(_run([python, "-c", INSTALLED_CHECK], cwd=work).stdout)
    # the wheel's copy was imported, not the editable one of the environment running the tests
    assert Path(found["file"]).resolve().is_relative_to(venv.resolve())
    assert found["version"] == ratingrl.__version__
    # the installed migrations reach this tree's newest revision on an empty database
    assert found["head"] == head_revision()
    assert found["upgrade"] == [None, head_revision()]
    assert found["stored"] == [[head_revision()]]
    # the server serves its pages from the installed static files
    static = "ratingrl/app/static/"
    installed = {static + name for name in found["static"]}
    assert {p for p in dists["must"] if p.startswith(static)} <= installed
    assert installed <= dists["may"]
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        for path, page in (("/", "index.html"), ("/operator", "operator.html"),
                           ("/pairs", "pairs.html")):  # fmt: skip
            status, text = found["pages"][path]
            assert status == 200, path
            assert text == wheel.read(static + page).decode(), path
    assert found["claims"] > 0
