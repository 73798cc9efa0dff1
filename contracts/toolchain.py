"""Locate the project's pinned npm toolchain (anvil, solc-js) and the cache folder.

The binaries come from the project's own `node_modules` (see package.json), never a global install,
so every machine runs the same versions. `DCAI_NODE_MODULES` and `DCAI_ANVIL` override the lookup.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCES_DIR = PACKAGE_DIR / "src"


class ToolchainError(RuntimeError):
    pass


def _candidate_roots() -> list[Path]:
    roots: list[Path] = []
    env = os.environ.get("DCAI_NODE_MODULES")
    if env:
        roots.append(Path(env))
    # Editable installs and checkouts: the repository root holds node_modules.
    for base in (PACKAGE_DIR.parent, Path.cwd()):
        for parent in (base, *base.parents):
            roots.append(parent / "node_modules")
    return roots


def node_modules() -> Path:
    for root in _candidate_roots():
        if (root / "solc").is_dir() or (root / "@foundry-rs").is_dir():
            return root
    raise ToolchainError(
        "node_modules with the pinned toolchain not found; run `make setup` (npm ci) in the "
        "repository, or set DCAI_NODE_MODULES to the folder that holds @foundry-rs/anvil and solc"
    )


def _platform_package() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = platform.system().lower()
    return f"anvil-{system}-{arch}"


def anvil_binary() -> Path:
    env = os.environ.get("DCAI_ANVIL")
    if env:
        return Path(env)
    root = node_modules()
    path = root / "@foundry-rs" / _platform_package() / "bin" / "anvil"
    if not path.exists():
        raise ToolchainError(f"anvil binary not found at {path}; run `make setup` (npm ci)")
    return path


def solc_package() -> Path:
    path = node_modules() / "solc"
    if not (path / "package.json").exists():
        raise ToolchainError(f"solc-js not found under {path}; run `make setup` (npm ci)")
    return path


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolchainError("Node.js (`node`) is required to run the pinned solc-js compiler")
    return node


def cache_dir() -> Path:
    env = os.environ.get("DCAI_CACHE_DIR")
    path = Path(env) if env else Path.home() / ".cache" / "dcai-arena"
    path.mkdir(parents=True, exist_ok=True)
    return path
