"""Compiling the contracts with the pinned solc-js, and the artifact cache."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contracts.compiler import CompileError, CompileResult, compile_contracts
from contracts.toolchain import SOURCES_DIR

CONTRACTS = ("CollaborativeTrainer", "DataHandler", "Stakeable", "SparsePerceptron")


def _copy_sources(dst: Path) -> Path:
    src = dst / "src"
    shutil.copytree(SOURCES_DIR, src)
    return src


def test_first_compile_then_cache(tmp_path, compiled: CompileResult):
    cache = tmp_path / "cache"
    assert not cache.exists()
    first = compile_contracts(cache=cache)
    assert first.from_cache is False
    for name in CONTRACTS:
        art = first[name]
        assert len(art.bytecode) > 100 and len(art.deployed_bytecode) > 100
        assert any(item.get("type") == "function" for item in art.abi)
    # interfaces and abstract contracts have no bytecode and are left out
    assert set(first.artifacts) >= set(CONTRACTS)  # the core system; models and mechanisms join it
    assert "0.8." in first.compiler_version
    with pytest.raises(KeyError, match="no contract named"):
        first["Nope"]
    files = list((cache / "solc").glob("*.json"))
    assert [f.name for f in files] == [f"{first.cache_key}.json"]
    assert not list((cache / "solc").glob("*.tmp"))
    json.loads(files[0].read_text())  # complete, parseable

    second = compile_contracts(cache=cache)
    assert second.from_cache is True
    assert second.cache_key == first.cache_key
    assert second.compiler_version == first.compiler_version
    for name in CONTRACTS:
        assert second[name].bytecode == first[name].bytecode
        assert second[name].deployed_bytecode == first[name].deployed_bytecode
        assert second[name].abi == first[name].abi
    # the compiler is deterministic: the session's compile (another cache) agrees
    assert compiled.cache_key == first.cache_key
    for name in CONTRACTS:
        assert compiled[name].bytecode == first[name].bytecode


def test_cache_dir_from_environment(tmp_path, monkeypatch, compiled: CompileResult, solc_cache: Path):
    # DCAI_CACHE_DIR is honoured when no cache argument is given: point it at the session cache
    monkeypatch.setenv("DCAI_CACHE_DIR", str(solc_cache))
    again = compile_contracts()
    assert again.from_cache is True and again.cache_key == compiled.cache_key


def test_changed_source_and_syntax_error(tmp_path, compiled: CompileResult, solc_cache: Path):
    changed = _copy_sources(tmp_path / "changed")
    with open(changed / "Stakeable.sol", "a") as fh:
        fh.write("\n// a comment changes the cache key\n")
    broken = _copy_sources(tmp_path / "broken")
    text = (broken / "DataHandler.sol").read_text()
    (broken / "DataHandler.sol").write_text(text.replace("function keyOf(", "function keyOf((", 1))

    # both compiles are independent node processes: run them side by side
    with ThreadPoolExecutor(2) as pool:
        fut_changed = pool.submit(compile_contracts, changed, solc_cache)
        fut_broken = pool.submit(compile_contracts, broken, tmp_path / "broken-cache")
        result = fut_changed.result()
        with pytest.raises(CompileError) as ei:
            fut_broken.result()

    assert result.cache_key != compiled.cache_key
    assert result.from_cache is False  # even though the cache dir already holds the original
    assert set(result.artifacts) >= set(CONTRACTS)
    assert "DataHandler.sol" in str(ei.value)
    assert not (tmp_path / "broken-cache" / "solc").exists() or not list((tmp_path / "broken-cache" / "solc").glob("*"))
    # the changed sources are cached now, the original entry is still there
    assert compile_contracts(changed, solc_cache).from_cache is True
    assert compile_contracts(cache=solc_cache).from_cache is True


def test_empty_source_dir_is_an_error(tmp_path):
    with pytest.raises(CompileError, match="no Solidity sources"):
        compile_contracts(tmp_path, tmp_path / "cache")


def test_extra_source_folders_compile_with_the_builtin_ones(tmp_path):
    """A plugin mechanism's own folder: its contract imports the built-in sources by name; a folder that
    is missing, or a contract that would shadow a built-in one, is refused naming it."""
    plugin = tmp_path / "my_plugin"
    plugin.mkdir()
    (plugin / "Flat.sol").write_text(
        '// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\nimport {Ownable} from "Ownable.sol";\n'
        "contract FlatPrice is Ownable {\n    function price() external pure returns (uint256) { return 7; }\n}\n")
    cache = tmp_path / "cache"
    got = compile_contracts(cache=cache, extra_dirs=[plugin])
    assert "FlatPrice" in got.artifacts and "Stakeable" in got.artifacts
    assert got.cache_key != compile_contracts(cache=cache).cache_key  # the plugin's sources are in the key
    with pytest.raises(CompileError, match="does not exist"):
        compile_contracts(cache=cache, extra_dirs=[tmp_path / "nowhere"])
    (plugin / "Shadow.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Stakeable { uint256 public x; }\n")
    with pytest.raises(CompileError, match="'Stakeable' is defined in both"):
        compile_contracts(cache=cache, extra_dirs=[plugin])
