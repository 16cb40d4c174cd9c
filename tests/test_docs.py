"""The documentation site: its getting-started code runs, its API reference covers every public
module of src/ratingrl, and its strict build rejects a broken link or a stale reference.

``make docs`` (and ``make test``) build the whole site with ``mkdocs build --strict``; these tests
check what that build cannot see (a module with no page at all) and that strictness stays on.
"""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src"


def public_modules() -> set[str]:
    """Dotted names of every module and package under src/ratingrl with no ``_`` part.

    Read from the file tree (nothing imported); a folder without ``__init__.py``, such as the
    Alembic migrations, is not a package and holds no API.
    """
    names = set()
    for path in (SRC / "ratingrl").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        folders = (SRC.joinpath(*parts[:i]) for i in range(1, len(parts)))
        if not all((folder / "__init__.py").exists() for folder in folders):
            continue
        if parts[-1] == "__init__":
            parts.pop()
        if not any(part.startswith("_") for part in parts):
            names.add(".".join(parts))
    return names


def referenced_modules() -> dict[str, str]:
    """``::: name`` entries of docs/api/*.md, each with its page."""
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for name in re.findall(r"^::: *([\w.]+)", page.read_text(), flags=re.MULTILINE):
            found[name] = page.name
    return found


def test_the_api_reference_has_an_entry_for_every_public_module_and_no_other():
    public, referenced = public_modules(), referenced_modules()
    assert "ratingrl.rewards.training" in public and "ratingrl.app.migrations.env" not in public
    missing = sorted(public - set(referenced))
    assert not missing, (
        "public modules missing from the API reference (add `::: name` to the package's page "
        f"in docs/api/): {missing}"
    )
    stale = {name: page for name, page in referenced.items() if name not in public}
    assert not stale, f"docs/api entries naming no module of src/ratingrl: {stale}"


def test_each_package_page_holds_that_package():
    for name, page in referenced_modules().items():
        package = name.split(".")[1] if name.count(".") >= 1 else "ratingrl"
        expected = f"{package}.md" if (SRC / "ratingrl" / package).is_dir() else "ratingrl.md"
        assert page == expected, f"{name} is on docs/api/{page}, expected docs/api/{expected}"


def test_the_getting_started_page_shows_the_tested_example():
    """The page includes the example's marked section, so its code is the code tested below."""
    page = (DOCS / "index.md").read_text()
    assert '--8<-- "examples/getting_started.py:ten-lines"' in page
    example = (ROOT / "examples" / "getting_started.py").read_text()
    section = example.split("# --8<-- [start:ten-lines]\n")[1].split("# --8<-- [end:ten-lines]")[0]
    code = [line for line in section.splitlines() if line.strip() and not line.startswith("from ")]
    assert len(code) <= 10, f"the ten lines are {len(code)} lines (imports aside)"


def test_the_getting_started_example_learns_a_reward_that_orders_new_behaviour():
    from ratingrl.feedback.rollouts import collect_episodes, random_policy, segment_episodes
    from ratingrl.rewards.metrics import kendall_tau

    names = runpy.run_path(str(ROOT / "examples" / "getting_started.py"))
    assert names["rated"].class_counts().tolist() == [16, 16, 16, 16]
    rng = np.random.default_rng(1)
    episodes = collect_episodes("Pendulum-v1", random_policy([-2.0], [2.0], rng), 6, seed=100)
    fresh = segment_episodes(episodes, horizon=50)
    n, horizon, obs_dim = fresh.obs.shape
    rewards = names["reward_fn"](
        fresh.obs.reshape(n * horizon, obs_dim), fresh.acts.reshape(n * horizon, -1), None, None
    )
    assert rewards.shape == (n * horizon,)
    tau = kendall_tau(rewards.reshape(n, horizon).sum(axis=1), fresh.true_returns)
    assert tau > 0.5, tau


def load_extension():
    spec = importlib.util.spec_from_file_location("doctest_blocks", DOCS / "ext/doctest_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bare_doctests_are_fenced_and_indented_ones_left_alone():
    pytest.importorskip("griffe")
    fence = load_extension().fence_doctests
    text = "Why.\n>>> f([1])\n[1]\n\nMore.\n\nExample:\n    >>> g()\n    2"
    assert fence(text) == (
        "Why.\n\n```pycon\n>>> f([1])\n[1]\n```\n\nMore.\n\nExample:\n    >>> g()\n    2"
    )


@pytest.mark.parametrize(
    "page",
    ["[a page that is not there](nowhere.md)", "::: ratingrl.no_such_module"],
    ids=["broken link", "stale reference"],
)
def test_the_strict_build_fails_on(page, tmp_path):
    """The site's own configuration, on a one-page site holding the fault."""
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("mkdocstrings")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    python = config["plugins"][2]["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(SRC)]
    python["options"]["extensions"] = [f"{DOCS}/ext/doctest_blocks.py:DoctestBlocks"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(f"# Page\n\n{page}\n")
    config.update(docs_dir=str(tmp_path / "docs"), site_dir=str(tmp_path / "site"))
    config["nav"] = ["index.md"]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode != 0, done.stderr
    fault = "nowhere.md" if "nowhere" in page else "Could not collect 'ratingrl.no_such_module'"
    assert fault in done.stderr, done.stderr


def test_make_docs_builds_strictly_and_make_test_runs_it():
    """``--quiet`` silences the warnings ``--strict`` counts, so a quiet build never fails."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndocs: ")[1].split("\n\n")[0]
    assert "mkdocs build --strict" in recipe
    assert "--quiet" not in recipe and " -q" not in recipe, recipe
    test_recipe = makefile.split("\ntest: ")[1].split("\n\n")[0]
    assert "$(MAKE) --no-print-directory docs" in test_recipe
