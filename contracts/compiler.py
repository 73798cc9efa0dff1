"""Compile the Solidity sources with the pinned solc-js, caching artifacts.

All sources go to the compiler in one standard-JSON call (starting node and loading the wasm costs
about 0.7 s per call). A plugin mechanism adds folders of its own (`extra_dirs`): their files are
named `plugins/<folder name>/<path>` and import the built-in sources by name
(`import {Ownable} from "Ownable.sol";`), since every source is in the same call. The cache key is the hash of every source, the compiler version and the
settings, so a second run with unchanged sources compiles nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .toolchain import SOURCES_DIR, cache_dir, node_executable, solc_package

EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200

# Reads a standard-JSON input on stdin and prints the output; run with the pinned package on the path.
_DRIVER = "const solc=require(process.argv[1]);let s='';process.stdin.on('data',d=>s+=d);" \
    "process.stdin.on('end',()=>{process.stdout.write(JSON.stringify({version:solc.version()," \
    "output:JSON.parse(solc.compile(s))}));});"


class CompileError(RuntimeError):
    pass


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes


@dataclass(frozen=True)
class CompileResult:
    artifacts: dict[str, Artifact]
    compiler_version: str
    cache_key: str
    from_cache: bool

    def __getitem__(self, name: str) -> Artifact:
        try:
            return self.artifacts[name]
        except KeyError:
            raise KeyError(f"no contract named {name!r}; have {sorted(self.artifacts)}") from None


def _sources(src_dir: Path) -> dict[str, str]:
    files = sorted(src_dir.rglob("*.sol"))
    if not files:
        raise CompileError(f"no Solidity sources under {src_dir}")
    return {f.relative_to(src_dir).as_posix(): f.read_text() for f in files}


def _all_sources(src_dir: Path, extra_dirs: Sequence[Path | str]) -> dict[str, str]:
    sources = _sources(src_dir)
    for d in extra_dirs:
        d = Path(d)
        if not d.is_dir():
            raise CompileError(f"extra Solidity source folder {d} does not exist")
        prefix = f"plugins/{d.resolve().name}/"
        for name, text in _sources(d).items():
            if prefix + name in sources:
                raise CompileError(f"two extra source folders named {d.resolve().name!r} both hold {name}")
            sources[prefix + name] = text
    return sources


def _solc_version() -> str:
    return json.loads((solc_package() / "package.json").read_text())["version"]


def _settings() -> dict[str, Any]:
    return {
        "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
        "evmVersion": EVM_VERSION,
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
    }


def _cache_key(sources: dict[str, str], version: str, settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(version.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    for name, text in sorted(sources.items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def _run_solc(sources: dict[str, str], settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    std_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": settings,
    }
    proc = subprocess.run(
        [node_executable(), "-e", _DRIVER, str(solc_package())],
        input=json.dumps(std_input),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CompileError(f"solc-js failed (exit {proc.returncode}): {proc.stderr.strip()[:2000]}")
    result = json.loads(proc.stdout)
    output = result["output"]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    return result["version"], output


def _artifacts(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    where: dict[str, str] = {}
    for file, contracts in output.get("contracts", {}).items():
        for name, c in contracts.items():
            code = c["evm"]["bytecode"]["object"]
            if not code:  # interfaces and abstract contracts
                continue
            if name in out:  # artifacts are looked up by contract name: a plugin must not shadow one
                raise CompileError(f"contract {name!r} is defined in both {where[name]} and {file}; rename one")
            where[name] = file
            out[name] = {
                "abi": c["abi"],
                "bytecode": code,
                "deployed_bytecode": c["evm"]["deployedBytecode"]["object"],
            }
    return out


def compile_contracts(src_dir: Path = SOURCES_DIR, cache: Path | None = None,
                      extra_dirs: Sequence[Path | str] = ()) -> CompileResult:
    sources = _all_sources(src_dir, extra_dirs)
    version = _solc_version()
    settings = _settings()
    key = _cache_key(sources, version, settings)
    cache_root = (cache or cache_dir()) / "solc"
    cache_file = cache_root / f"{key}.json"
    from_cache = cache_file.exists()
    if from_cache:
        data = json.loads(cache_file.read_text())
    else:
        full_version, output = _run_solc(sources, settings)
        data = {"compiler_version": full_version, "artifacts": _artifacts(output)}
        cache_root.mkdir(parents=True, exist_ok=True)
        # Atomic write: a concurrent or interrupted run never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=cache_root, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, cache_file)
    artifacts = {
        name: Artifact(
            name=name,
            abi=a["abi"],
            bytecode=bytes.fromhex(a["bytecode"]),
            deployed_bytecode=bytes.fromhex(a["deployed_bytecode"]),
        )
        for name, a in data["artifacts"].items()
    }
    return CompileResult(artifacts, data["compiler_version"], key, from_cache)
