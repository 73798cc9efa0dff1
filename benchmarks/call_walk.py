"""How a newcomer would walk the code of `dcai run`: the project files its functions live in, in
the order each function is first called, and how often that walk goes back to a file it already
left. Measured with sys.setprofile (and threading.setprofile) on `call` events in the driver
process; only the project's own packages count (orchestrator, agents, contracts), not tests,
benchmarks or libraries.

    python -m benchmarks.call_walk scenarios/label_flip.yaml [--duration 40] [--root DIR] [--json OUT]

`--root` measures another checkout (for example the commit before a refactor, extracted with
`git archive`); `--duration` shortens the schedule (the walk counts each function once, so a
shorter run walks the same code, give or take branches taken late). Printed, for functions only
and with module bodies run at import counted too: distinct files, the walk's length in functions,
returns to a file already left, and the files in first-visit order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

PACKAGES = ("orchestrator", "agents", "contracts")


class Walk:
    def __init__(self, root: Path):
        self.prefixes = tuple(str(root / p) + os.sep for p in PACKAGES)
        self.root = root
        self.seen_functions: set[Any] = set()
        self.calls: list[tuple[str, str]] = []  # (file, function) of each newly called function, in order
        self.lock = threading.Lock()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        path = code.co_filename
        if not path.startswith(self.prefixes):
            return
        with self.lock:
            if code in self.seen_functions:
                return
            self.seen_functions.add(code)
            self.calls.append((os.path.relpath(path, self.root), code.co_qualname))

    def figures(self, imports: bool) -> dict[str, Any]:
        """With `imports`, module bodies run at import count as visits too; without, functions only."""
        files = [f for f, name in self.calls if imports or name != "<module>"]
        order: list[str] = []
        left: set[str] = set()
        returns = 0
        current: str | None = None
        for f in files:
            if f == current:
                continue
            if f in left:
                returns += 1
            if current is not None:
                left.add(current)
            current = f
            if f not in order:
                order.append(f)
        return {"distinct_files": len(order), "functions": len(files), "returns": returns, "files": order}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--duration", type=int, default=None, help="blocks; shortens the schedule")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    import yaml

    data = yaml.safe_load(Path(args.scenario).read_text())
    if args.duration:
        data["schedule"]["duration"] = args.duration
    data.setdefault("outputs", {})["progress"] = False
    out = tempfile.mkdtemp(prefix="call-walk-")
    data["outputs"]["dir"] = out
    scenario = Path(out) / Path(args.scenario).name
    scenario.write_text(yaml.safe_dump(data))

    from orchestrator.cli import main as dcai

    walk = Walk(root)
    threading.setprofile(walk)
    sys.setprofile(walk)
    try:
        code = dcai(["run", str(scenario), "--no-progress"])
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    figures = {"root": str(root), "scenario": args.scenario, "duration": args.duration, "exit": code,
               **walk.figures(imports=False), "with_imports": walk.figures(imports=True), "calls": walk.calls}
    for label, f in (("functions only", figures), ("imports included", figures["with_imports"])):
        print(f"\n{label}: {f['distinct_files']} files, {f['functions']} functions, "
              f"{f['returns']} returns to a file already left (exit {code})")
    for name in figures["files"]:
        print(f"  {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
