"""The layering holds: agent/ > ui/ | sync/ > kiosk/ > drivers/ (docs/architecture.md).

Two independent checks. `lint-imports` runs the [importlinter] contracts of setup.cfg (and
this test insists the contracts are still there). A plain scan of the sources for import
statements repeats the essentials without that configuration, so editing the contracts
away cannot make the layering silently lapse.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "ui", "sync", "kiosk", "drivers")
CONTRACTS = ("layers", "drivers", "kiosk", "ui", "sync")
SHIM = "kiosk/__main__.py"  # `python -m kiosk`: the one import of agent/ from below
# Which of the project's top-level packages each may import (itself always allowed).
MAY_IMPORT = {
    "drivers": set(),
    "kiosk": {"drivers"},
    "sync": {"kiosk", "drivers"},
    "ui": {"kiosk"},  # and of kiosk/ only the local API client (test below)
    "agent": {"ui", "sync", "kiosk", "drivers"},
}
UI_DOOR = "kiosk.api_client"
# The one reader of outside tables (imports nothing of the project), for ui/config.py only.
SHARED_READER = ("ui/config.py", "drivers.fieldspec")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, lazy ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            # `from kiosk import engine` names the module kiosk.engine
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_import_contracts_are_configured() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg.get("importlinter", "root_packages").split() == list(PACKAGES)
    for name in CONTRACTS:
        assert cfg.has_section(f"importlinter:contract:{name}"), name
    assert cfg.get("importlinter:contract:layers", "type") == "layers"


def test_lint_imports_finds_every_contract_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out.stdout, out.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_layer_above_it(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    bad = []
    for path in _sources(package):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in PACKAGES and top not in allowed:
                if rel == SHIM and module.startswith("agent.cli"):
                    continue
                if rel == SHARED_READER[0] and module.startswith(SHARED_READER[1]):
                    continue
                bad.append(f"{rel}:{line}: {module}")
    assert not bad, f"{package}/ may import only {sorted(allowed)}: {bad}"


def test_ui_uses_only_the_local_api_client_of_kiosk() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources("ui")
        for line, module in _imports(path)
        if module.split(".")[0] == "kiosk"
        and module != UI_DOOR and not module.startswith(f"{UI_DOOR}.")
    ]
    assert not bad, bad


def test_the_shared_reader_imports_nothing_of_the_project() -> None:
    """drivers/fieldspec.py may be used by ui/config.py because it is a pure parser: were it
    to import anything of the project, ui/ would have a way into the layers below."""
    imports = {module.split(".")[0] for _, module in _imports(ROOT / "drivers/fieldspec.py")}
    assert not imports & set(PACKAGES), imports


def test_the_python_m_kiosk_shim_only_calls_the_command_line() -> None:
    """kiosk/__main__.py stays a shim: it may import agent.cli and nothing else of agent/."""
    imports = {module for _, module in _imports(ROOT / SHIM)}
    assert imports == {"sys", "agent.cli", "agent.cli.main"}


def test_the_kiosk_command_is_agent_cli_main() -> None:
    (script,) = entry_points(group="console_scripts", name="kiosk")
    assert script.value == "agent.cli:main"
