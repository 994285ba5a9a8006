"""The layers only point one way: handlers -> features -> store.

Read from the source (``ast``, nothing imported), every ``import`` counts,
including those inside functions and ``TYPE_CHECKING`` blocks:

- store/ and protocol/ know nothing of HTTP or the server: no aiohttp, no
  proximity_server, no handlers;
- features/ are transport-free: no aiohttp, no handlers, no proximity_server.app;
- handlers/ reach the stores only through features: they import app/,
  features/ and protocol/ (and the two socket handlers, realtime/).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Handlers allowed a first-party import outside app/, features/ and protocol/,
# each with its reason. Keep this short.
HANDLER_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("handlers/proximity.py", "proximity_server.realtime"): "owns the session socket (WS /proximity/...)",
    ("handlers/user_socket.py", "proximity_server.realtime"): "owns the user socket (WS /ws)",
}
HANDLER_LAYERS = ("protocol", "proximity_server.app", "proximity_server.features")
FIRST_PARTY = ("config", "protocol", "store", "proximity_server", "handlers")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # ``from proximity_server import app`` names a module too.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            if any(_within(module, banned) for banned in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("store", ("aiohttp", "proximity_server", "handlers")),
        ("protocol", ("aiohttp", "proximity_server", "handlers", "store")),
        ("proximity_server/features", ("aiohttp", "handlers", "proximity_server.app")),
    ],
)
def test_lower_layers_do_not_import_upper_ones(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(folder, forbidden) == []


def test_handlers_import_only_app_features_and_protocol() -> None:
    found = []
    for path in sorted((ROOT / "handlers").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            if not any(_within(module, root) for root in FIRST_PARTY):
                continue  # the standard library or a third-party package
            if any(_within(module, layer) for layer in HANDLER_LAYERS):
                continue
            if any(n == name and _within(module, allowed) for n, allowed in HANDLER_EXCEPTIONS):
                continue
            found.append(f"{name}:{line} imports {module}")
    assert found == []


def test_the_checks_see_imports() -> None:
    """A check that parses nothing would pass vacuously: the handlers do import features."""
    handler_imports = {module for path in (ROOT / "handlers").rglob("*.py") for _, module in _imports(path)}
    assert any(_within(module, "proximity_server.features") for module in handler_imports)
    assert any(_within(module, "aiohttp") for module in handler_imports)
