"""The house's rules, checked on the code itself: one installed namespace, no reach into another
package's private modules, no import circle, layers that only import downward."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The production packages, each a top-level folder of the repository and installed under
#: ``nanosd_nas``; the application shell is ``nanosd_nas`` itself (its ``cli``).
PACKAGES = ("spaces", "latency_models", "search", "dashboards", "nanosd_nas")


def _package_of(module: str) -> str | None:
    """The production package a ``nanosd_nas.…`` module name belongs to."""
    parts = module.split(".")
    if parts[0] != "nanosd_nas":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES[:-1] else "nanosd_nas"


def _modules() -> Iterator[tuple[str, Path]]:
    """(package, file) for every production module, the links in ``nanosd_nas/`` not followed."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if package == "nanosd_nas" and path.relative_to(ROOT / package).parts[0] in PACKAGES:
                continue
            yield package, path


def _imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (relative ones resolved)."""
    dotted = ".".join(("nanosd_nas", *path.relative_to(ROOT).with_suffix("").parts))
    if path.parts[len(ROOT.parts)] == "nanosd_nas":
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = dotted.rsplit(".", 1)[0] if path.name != "__init__.py" else dotted[:-9]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def test_no_production_module_imports_another_packages_private_module() -> None:
    offences: dict[str, str] = {}
    for package, path in _modules():
        for line, module in _imported(path):
            target = _package_of(module)
            if target is None or target == package:
                continue
            if any(part.startswith("_") and part != "__init__" for part in module.split(".")):
                offences.setdefault(f"{path.relative_to(ROOT)}:{line}", module)
    assert not offences, "imports of another package's private module:\n" + "\n".join(
        f"{where} imports {module}" for where, module in offences.items())


#: The longest a production module may grow before it is split.
MAX_MODULE_LINES = 400


def test_no_production_module_passes_the_line_bound() -> None:
    long = {str(path.relative_to(ROOT)): n for _, path in _modules()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


def test_layers_and_circles_hold() -> None:
    """import-linter's contracts (pyproject.toml): the layers, and no circle inside a package."""
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if linter is None:
        pytest.fail("import-linter is not installed (it is a dev dependency)")
    result = subprocess.run([linter, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_wheel_installs_only_the_nanosd_nas_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=600,
                   capture_output=True)
    (wheel,) = tmp_path.glob("nanosd_nas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"nanosd_nas",
                                                      wheel.name.split("-py")[0] + ".dist-info"}
    # Every sub-package and its data came along, under the namespace.
    for expected in ("nanosd_nas/spaces/presets/nanosd.yaml", "nanosd_nas/latency_models/agent/",
                     "nanosd_nas/search/store/migrations/env.py",
                     "nanosd_nas/dashboards/templates/study.html", "nanosd_nas/cli/__init__.py",
                     "nanosd_nas/search/distill/teachers/trained/unet/diffusion_pytorch_model.",
                     "nanosd_nas/search/distill/teachers/trained/vae/config.json",
                     "nanosd_nas/search/distill/teachers/trained/context.safetensors",
                     "nanosd_nas/search/distill/teachers/trained/features.safetensors"):
        assert any(name.startswith(expected) for name in names), expected
