"""pip install . gives a working seppo; requirements.txt, requirements-nodeps.txt and the lock agree."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# installed with --no-deps from requirements-nodeps.txt (docs/install.md), so not in pyproject
NO_DEPS = {"hpsv2", "image-reward"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"{path.name}: {line!r} is not an exact pin (name==version)"
        out[_norm(m.group(1))] = m.group(2)
    return out


def test_requirements_are_exact_and_agree_with_the_lock():
    lock = _pins(ROOT / "requirements.lock")
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        for pkg, version in _pins(ROOT / name).items():
            assert lock.get(pkg) == version, f"{name}: {pkg}=={version}, the lock has {lock.get(pkg)}"
    for pkg in ("peft", "dvclive", "scipy", "pytest", "torch", "great-expectations", "prefect"):
        assert pkg in _pins(ROOT / "requirements.txt"), pkg


def test_pyproject_ranges_admit_the_locked_versions():
    lock = _pins(ROOT / "requirements.lock")
    reqs = PYPROJECT["project"]["dependencies"] + [
        r for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra]
    for spec in reqs:
        req = Requirement(spec)
        assert _norm(req.name) in lock, f"pyproject names {req.name}, which the lock does not have"
        assert req.specifier.contains(lock[_norm(req.name)], prereleases=True), (spec, lock[_norm(req.name)])
    assert set(PYPROJECT["project"]["optional-dependencies"]) >= {"flows", "scorers", "video", "dev"}


def _third_party_imports(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("seppo", "flows", "tests", "__future__")}


def test_every_import_is_declared():
    """Each third-party module the package (or flows/) imports comes from a declared distribution."""
    dists = packages_distributions()
    project = PYPROJECT["project"]
    core = {_norm(Requirement(r).name) for r in project["dependencies"]}
    extras = {k: {_norm(Requirement(r).name) for r in v} for k, v in project["optional-dependencies"].items()}
    # the scorers' and the video metrics' packages are extras: modules import them inside functions
    # study/remote.py (`seppo study --submit`, imported only by that command) needs the flows extra's Prefect
    allowed = {"src/seppo": core | extras["scorers"] | extras["video"] | extras["flows"] | NO_DEPS
               | {"bitsandbytes"},  # bnb: CUDA only
               "flows": core | extras["flows"]}
    for folder, names in allowed.items():
        for module in sorted(_third_party_imports(ROOT / folder)):
            providers = {_norm(d) for d in dists.get(module, [])}
            if module == "bitsandbytes":
                continue  # train.use_8bit_adam on CUDA: the error message says to install it
            assert providers & names, f"{folder} imports {module} (from {providers or 'nothing installed'}), " \
                                      "not declared in pyproject.toml"


def test_console_script_points_at_the_cli():
    assert PYPROJECT["project"]["scripts"]["seppo"] == "seppo.cli:app"
    from seppo.cli import app

    assert callable(app)
