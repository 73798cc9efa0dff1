"""The attack-cost frontier of a finished `dcai attack-search`, as one PNG (a panel per cell), for the README.

    python -m benchmarks.attack_search_plot RESULTS/attack-search-mechanisms/frontier.json OUT.png

Each panel: every trial (filled red: reached the target; grey: missed), the frontier (no trial cheaper
and at least as damaging), the frontier points re-run on every seed with their 95% intervals, and
the target. Trials stopped early have no final figures and are not drawn (their count is in the title).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def plot(doc: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = doc["cells"]
    target = doc["target"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        trials = [t for t in cell["trials"] if t.get("cost_ether") is not None and t.get("damage") is not None]
        stopped = sum(t.get("status") == "stopped" for t in cell["trials"])
        for reached, color, label in ((True, "#c62828", "reached"), (False, "#9e9e9e", "missed")):
            pts = [t for t in trials if bool(t["reached"]) == reached]
            if pts:
                ax.scatter([t["cost_ether"] for t in pts], [t["damage"] for t in pts], s=24, color=color,
                           alpha=0.85, label=label, zorder=3)
        front, best = [], float("-inf")
        for t in sorted(trials, key=lambda t: (t["cost_ether"], -t["damage"])):
            if t["damage"] > best:
                front.append(t)
                best = t["damage"]
        if front:
            ax.plot([t["cost_ether"] for t in front], [t["damage"] for t in front], color="#1f4e9c", lw=1.2,
                    drawstyle="steps-post", label="frontier")
        for i, f in enumerate(cell["frontier"]):
            c, d = f["cost"], f["damage"]
            if c["mean"] is None or d["mean"] is None:
                continue
            xe = [[c["mean"] - c["ci_low"]], [c["ci_high"] - c["mean"]]] if c.get("ci_low") is not None else None
            ye = [[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]] if d.get("ci_low") is not None else None
            ax.errorbar([c["mean"]], [d["mean"]], xerr=xe, yerr=ye, fmt="s", color="#1f4e9c", capsize=3,
                        label=f"re-run on {c['n']} seeds" if i == 0 else None, zorder=4)
        ax.axhline(target["level"], color="#6d6d6d", ls="--", lw=1, label="target")
        best_pt = cell.get("best")
        title = cell["cell"] + (f"\ncheapest: {best_pt['cost']['mean']:.3g} ETH" if best_pt
                                else "\nno attack reached it on every seed")
        ax.set_title(title + (f" ({stopped} stopped early)" if stopped else ""), fontsize=9)
        ax.set_xlabel("attacker cost (ETH)", fontsize=8)
        ax.set_ylabel("accuracy points lost" if target["kind"] == "accuracy_drop_pts" else target["kind"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(f"{doc['name']}: attacker cost against damage, per mechanism", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(plot(json.loads(Path(argv[0]).read_text()), Path(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
