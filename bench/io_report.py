#!/usr/bin/env python3
"""Table and JSON of bench/io.sh: io_report.py RUNS.jsonl OUT.json [--set key=value]...

RUNS.jsonl has one object per guest run (io_run.py's output plus emu and test). The
table gives, per metric, ftvm's and QEMU's MB/s (10^6 bytes/s), ftvm/QEMU and whether
that ratio meets the target (>= 0.5). Exit status 1 if any run failed or a metric of
a test that ran is missing (tests left out with TESTS are not missing).
"""
import json
import sys

TARGET = 0.5
METRICS = [
    ("file", "disk_write", "disk write, file backend (MB/s)"),
    ("file", "disk_read", "disk read, file backend (MB/s)"),
    ("nbd", "disk_write", "disk write, NBD backend (MB/s)"),
    ("nbd", "disk_read", "disk read, NBD backend (MB/s)"),
    ("net", "net_host_to_guest", "TCP host -> guest (MB/s)"),
    ("net", "net_guest_to_host", "TCP guest -> host (MB/s)"),
]


def main():
    runs_path, out_path = sys.argv[1], sys.argv[2]
    meta = {}
    args = sys.argv[3:]
    while args:
        if args[0] == "--set":
            k, _, v = args[1].partition("=")
            meta[k] = v
            args = args[2:]
        else:
            args = args[1:]
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    by = {(r["emu"], r["test"]): r for r in runs}
    rows = []
    bad = False
    for r in runs:
        if r["rc"] != 0 or r["timed_out"] or r["errors"]:
            bad = True
    for test, metric, label in METRICS:
        row = {"metric": f"{test}:{metric}", "label": label}
        for emu in ("ftvm", "qemu"):
            r = by.get((emu, test))
            res = r["results"].get(metric) if r else None
            row[emu] = res["mb_s"] if res else None
            row[f"{emu}_detail"] = res
            if (emu, test) in by and row[emu] is None:
                bad = True
        f, q = row["ftvm"], row["qemu"]
        row["ratio"] = f / q if f is not None and q else None
        row["meets_target"] = None if row["ratio"] is None else row["ratio"] >= TARGET
        rows.append(row)
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    print(f"{'metric':38} {'ftvm':>9} {'qemu':>9} {'ratio':>7}  target >= {TARGET}")
    for row in rows:
        verdict = {None: "-", True: "ok", False: "BELOW"}[row["meets_target"]]
        print(f"{row['label']:38} {fmt(row['ftvm']):>9} {fmt(row['qemu']):>9}"
              f" {fmt(row['ratio'], 2):>7}  {verdict}")
    for r in runs:
        problems = list(r["errors"])
        if r["timed_out"]:
            problems.append("TIMEOUT")
        if r["rc"] != 0:
            problems.append(f"exit status {r['rc']}")
        if problems:
            print(f"  {r['emu']} {r['test']}: " + "; ".join(problems))
    json.dump({"meta": meta, "target_ratio": TARGET, "metrics": rows, "runs": runs},
              open(out_path, "w"), indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
