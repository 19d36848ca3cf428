#!/usr/bin/env python3
"""Summarises bench/machine.sh's runs: a table on stdout, the same as JSON in a file.

Usage: report.py RUNS.jsonl OUT.json [--set key=value ...]

RUNS.jsonl has one line per emulator run (runguest.py's report plus emu, test,
variant, run, cmdline). See bench/README.md for the metrics and targets.
"""

import argparse
import json
import statistics
import sys
from datetime import datetime, timezone

# Targets for ftvm (bench/README.md).
BOOT_MAX_RATIO = 2.0  # boot time <= 2x QEMU's
INT_MIN_MIPS = 300.0  # integer MIPS >= 300
FP_MIN_RATIO = 0.5  # FP MIPS >= 0.5x QEMU's


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("runs")
    p.add_argument("out")
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()

    runs = [json.loads(line) for line in open(a.runs) if line.strip()]
    config = dict(kv.split("=", 1) for kv in a.set)
    problems = []

    def select(emu, test, variant=None):
        return [
            r
            for r in runs
            if r["emu"] == emu and r["test"] == test and (variant is None or r["variant"] == variant)
        ]

    def check(r, want_ready=True):
        if r["timed_out"]:
            problems.append(f"{r['emu']} {r['test']} {r['variant']} #{r['run']}: timed out")
        elif r["rc"] != 0:
            problems.append(f"{r['emu']} {r['test']} {r['variant']} #{r['run']}: exit status {r['rc']}")
        if want_ready and r["ready_s"] is None:
            problems.append(f"{r['emu']} {r['test']} {r['variant']} #{r['run']}: no ready line")
        if r["test"].startswith(("mips-", "count-")) and r["variant"] != "icount0":
            if r.get("status") not in ("ok",):
                problems.append(
                    f"{r['emu']} {r['test']} {r['variant']} #{r['run']}: program status {r.get('status')}"
                )

    for r in runs:
        check(r)

    metrics = []

    def add(name, unit, ftvm, qemu, target, passed, note=""):
        ratio = ftvm / qemu if ftvm is not None and qemu else None
        metrics.append(
            {
                "metric": name,
                "unit": unit,
                "ftvm": ftvm,
                "qemu": qemu,
                "ratio_ftvm_over_qemu": ratio,
                "target": target,
                "pass": passed(ftvm, qemu, ratio) if ftvm is not None else None,
                "note": note,
            }
        )

    # Boot time: spawn to the ready line, median of N.
    for variant, label in (("default", "boot to ready"), ("notests", "boot to ready, cryptomgr.notests=1")):
        f = [r["ready_s"] for r in select("ftvm", "boot", variant)]
        q = [r["ready_s"] for r in select("qemu", "boot", variant)]
        if not f and not q:
            continue
        add(
            label,
            "s",
            median(f),
            median(q),
            f"<= {BOOT_MAX_RATIO:g}x qemu",
            lambda fv, qv, ratio: ratio is not None and ratio <= BOOT_MAX_RATIO,
            f"median of ftvm {len(f)}, qemu {len(q)} runs",
        )

    counts = {}
    for prog in ("intbench", "fpbench"):
        test = f"count-{prog}"

        def diff(emu, variant):
            rs = select(emu, test, variant)
            w = [r for r in rs if r["run"] != 0]
            z = [r for r in rs if r["run"] == 0]
            if not w or not z or w[0]["icount_user"] is None or z[0]["icount_user"] is None:
                return None
            return w[0]["icount_user"] - z[0]["icount_user"]

        plugin = diff("qemu", "plugin")
        stats = diff("ftvm", "stats")
        icount0 = [r["elapsed_ns"] for r in select("qemu", test, "icount0")]
        icount0 = icount0[0] if icount0 else None
        if plugin is not None:
            chosen, source = plugin, "qemu insn_count plugin (user-mode, W - 0)"
        elif stats is not None:
            chosen, source = stats, "ftvm --stats icount_user (W - 0)"
        elif icount0 is not None:
            chosen, source = icount0, "qemu -icount shift=0 elapsed_ns (all modes, estimate)"
        else:
            chosen, source = None, "none"
        counts[prog] = {
            "instructions": chosen,
            "source": source,
            "qemu_plugin_user_diff": plugin,
            "ftvm_stats_user_diff": stats,
            "qemu_icount0_elapsed_ns": icount0,
        }
        if plugin is not None and stats is not None and plugin != stats:
            rel = abs(plugin - stats) / plugin
            if rel > 0.001:
                problems.append(
                    f"{prog}: ftvm counts {stats} instructions, QEMU's plugin {plugin} ({rel:.2%} apart)"
                )

        def mips(emu):
            ns = [r["elapsed_ns"] for r in select(emu, f"mips-{prog}") if r["status"] == "ok"]
            if chosen is None or not ns:
                return None, ns
            per_run = [chosen * 1e3 / n for n in ns]
            return median(per_run), per_run

        fm, fruns = mips("ftvm")
        qm, qruns = mips("qemu")
        counts[prog]["ftvm_mips_runs"] = fruns
        counts[prog]["qemu_mips_runs"] = qruns
        if prog == "intbench":
            add(
                "intbench MIPS",
                "MIPS",
                fm,
                qm,
                f">= {INT_MIN_MIPS:g} MIPS",
                lambda fv, qv, ratio: fv >= INT_MIN_MIPS,
                f"{chosen} instructions from {source}",
            )
        else:
            add(
                "fpbench MIPS",
                "MIPS",
                fm,
                qm,
                f">= {FP_MIN_RATIO:g}x qemu",
                lambda fv, qv, ratio: ratio is not None and ratio >= FP_MIN_RATIO,
                f"{chosen} instructions from {source}",
            )

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "metrics": metrics,
        "instruction_counts": counts,
        "problems": problems,
        "runs": runs,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    def fmt(v, unit):
        if v is None:
            return "-"
        return f"{v:.2f}" if unit == "s" else f"{v:.0f}"

    print()
    if config.get("ftvm_available") != "1":
        print(f"ftvm: {config.get('ftvm_note') or 'unavailable'}; QEMU's figures only.")
    elif config.get("ftvm_note"):
        print(f"ftvm: {config['ftvm_note']}")
    rows = [("metric", "ftvm", "qemu", "ratio", "target", "pass")]
    for m in metrics:
        ratio = m["ratio_ftvm_over_qemu"]
        rows.append(
            (
                f"{m['metric']} ({m['unit']})",
                fmt(m["ftvm"], m["unit"]),
                fmt(m["qemu"], m["unit"]),
                "-" if ratio is None else f"{ratio:.2f}",
                m["target"],
                {True: "yes", False: "NO", None: "-"}[m["pass"]],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for prog, c in counts.items():
        print(
            f"{prog}: {c['instructions']} instructions ({c['source']}); "
            f"plugin {c['qemu_plugin_user_diff']}, ftvm {c['ftvm_stats_user_diff']}, "
            f"qemu icount0 {c['qemu_icount0_elapsed_ns']}"
        )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
