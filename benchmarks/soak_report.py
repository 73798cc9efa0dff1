"""Soak, the printed report of a result dictionary."""

from __future__ import annotations

import math
from typing import Any


def print_report(r: dict[str, Any]) -> None:
    print()
    print(f"{'window':>6} {'tx':>14} {'end s':>7} {'tx/s':>7} {'lat blk p50':>11} {'p99':>5} "
          f"{'lat s p50':>9} {'p99':>6} {'others':>6} {'driver':>7} {'shards':>7} {'ray':>7} {'anvil':>7}  (RSS MiB)")
    for w in r["windows"]:
        m = w["rss_mib"]
        print(f"{w['window']:>6} {w['from_tx']:>6,}-{w['to_tx']:<7,} {w['end_s']:>7.1f} {w['tps']:>7.0f} "
              f"{w['latency_blocks_p50']:>11.1f} {w['latency_blocks_p99']:>5.1f} {w['latency_s_p50']:>9.3f} "
              f"{w['latency_s_p99']:>6.3f} {w.get('other_cores', math.nan):>6.2f} {m.get('driver', 0):>7.0f} {m.get('shards', 0):>7.0f} "
              f"{m.get('ray', 0):>7.0f} {m.get('anvil', 0):>7.0f}")
    t = r["latency_trend"]
    print()
    print(f"final {r['final']:,} of {r['settings']['tx']:,} ({r['statuses']}), actions {r['actions']}, "
          f"{r['overall_tps']:.0f} tx/s over {r['loop_s']:.0f} s, tick p50 {r['tick_ms_p50']:.0f} ms, "
          f"evm_mine p50 {r['mine_ms_p50']:.0f} ms, anvil CPU {r['node_cpu_ms_per_tx']:.2f} ms/tx, "
          f"machine busy {r.get('machine_busy_cores', r.get('foreign_cores', math.nan)):.2f} cores, of which other "
          f"processes {r.get('other_cores', math.nan):.2f}")
    print(f"reconciliation: {'ok' if r['reconciliation']['ok'] else 'MISMATCH'} "
          f"({r['reconciliation']['agents']} agents, {r['reconciliation']['mismatched']} mismatched)")
    print(f"latency trend: p50 {t['latency_s_p50_per_10k_tx'] * 1e3:+.1f} ms per 10k tx "
          f"(first quarter {t['latency_s_p50_first_quarter'] * 1e3:.0f} ms, last {t['latency_s_p50_last_quarter'] * 1e3:.0f} ms), "
          f"p99 {t['latency_s_p99_per_10k_tx'] * 1e3:+.1f} ms per 10k tx, "
          f"blocks p50 {t['latency_blocks_p50_per_10k_tx']:+.3f} per 10k tx; "
          f"tx/s {t['tps_per_10k_tx']:+.1f} per 10k tx (first quarter {t['tps_first_quarter']:.0f}, "
          f"last {t['tps_last_quarter']:.0f})")
    print("memory per process (RSS MiB: start / after warm-up / end / peak; growth per 10k tx after warm-up):")
    for name, v in r["memory"].items():
        print(f"  {name:<34} {v['start_mib']:>7.0f} {v['after_warmup_mib'] or float('nan'):>7.0f} "
              f"{v['end_mib']:>7.0f} {v['peak_mib']:>7.0f}  {v['growth_mib_per_10k_tx']:+8.2f} MiB/10k tx  "
              f"{r['memory_verdict'][name]}")
    for k, held in enumerate(r.get("shards_hold") or []):
        print(f"  shard {k} holds at the end: {held}")
