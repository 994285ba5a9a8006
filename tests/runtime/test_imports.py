"""Every module of the project imports on its own, as the first import of a
fresh interpreter: an import cycle (``a`` needs ``b`` half-initialised) fails
here instead of in production, whichever module a process happens to load first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "protocol", "store", "proximity_server", "handlers", "bench")

# Run in one child interpreter: before each import, every project module is
# dropped from sys.modules, so each import starts from nothing of ours (third-
# party packages stay loaded, which only saves time).
CHECK = r"""
import importlib, sys, traceback
ours = {PACKAGES!r}
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ":\n" + traceback.format_exc(limit=3))
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def project_modules() -> list[str]:
    names = ["run"]
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1] == "__main__" or "data" in parts:
                continue
            names.append(".".join(parts))
    return names


def test_project_modules_are_found() -> None:
    modules = project_modules()
    assert "proximity_server.realtime.user_socket" in modules
    assert "store.conversations" in modules
    assert len(modules) > 80


def test_every_module_imports_first_without_a_cycle() -> None:
    modules = project_modules()
    proc = subprocess.run(
        [sys.executable, "-c", CHECK.replace("{PACKAGES!r}", repr(PACKAGES)), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
