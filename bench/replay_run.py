#!/usr/bin/env python3
"""Runs the record/replay benchmark for bench/replay.sh (configured by environment).

For each workload: `ftvm run --record LOG --stats`, then `ftvm replay LOG`, with wall
times taken here; for the CPU workload also plain `ftvm run --stats` runs, alternating
with recorded ones, for the record overhead. Prints a table and writes
RESULTS/replay-<date>.json.
"""

import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

FTVM = os.environ["FTVM"]
N = int(os.environ["N"])
LOOP = int(os.environ["LOOP"])
IDLE_S = int(os.environ["IDLE_S"])
SLEEP_S = int(os.environ["SLEEP_S"])
DISK_MB = int(os.environ["DISK_MB"])
NET_MB = int(os.environ["NET_MB"])
WORKLOADS = os.environ["WORKLOADS"].split()
CMDLINE = os.environ["CMDLINE"]
RUN_TIMEOUT = int(os.environ["RUN_TIMEOUT"])
RESULTS = os.environ["RESULTS"]

NS = f"ftvm-rrb-{os.getpid()}"
HOST_IP = "10.79.0.1"
GUEST_IP = "10.79.0.2"


def guest_cmd(name):
    busy = f"i=0; while [ $i -lt {LOOP} ]; do i=$((i+1)); done; echo bench-done"
    if name == "cpu":
        return busy
    if name == "sleep":
        return f"sleep {SLEEP_S}; echo bench-done"
    if name == "idle":
        return f"sleep {IDLE_S}; echo bench-done"
    if name == "disk":
        return (f"dd if=/dev/zero of=/dev/vda bs=1M count={DISK_MB} 2>/dev/null && sync && "
                f"echo 3 > /proc/sys/vm/drop_caches && "
                f"dd if=/dev/vda of=/dev/null bs=1M count={DISK_MB} 2>/dev/null && echo bench-done")
    if name == "net":
        return (f"ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up && "
                f"dd if=/dev/zero bs=64k count={NET_MB * 16} 2>/dev/null | nc {HOST_IP} 5000 && "
                f"nc {HOST_IP} 5001 </dev/null >/dev/null && echo bench-done")
    raise ValueError(name)


def parse_stats(stderr):
    out = {}
    for line in stderr.splitlines():
        if "=" in line and line.split("=", 1)[0].isidentifier():
            k, v = line.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def run(args, netns=False):
    cmd = ([shutil.which("ip") or "ip", "netns", "exec", NS] if netns else []) + [FTVM] + args
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT)
    wall = time.monotonic() - t0
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    return {"rc": p.returncode, "wall": wall, "stdout": out, "stderr": err,
            "stats": parse_stats(err)}


def vm_args(name, tmp):
    args = ["--cmdline", CMDLINE, "--guest-cmd", guest_cmd(name), "--stats"]
    if name == "disk":
        img = os.path.join(tmp, "disk.img")
        with open(img, "wb") as f:
            f.truncate((DISK_MB + 16) << 20)
        args += ["--disk", f"path={img}"]
    if name == "net":
        args += ["--net", "tap=tap0"]
    return args


def check(name, r, what):
    if r["rc"] != 0 or (what != "replay" and "bench-done" not in r["stdout"]):
        sys.stderr.write(f"{name}: {what} failed (rc {r['rc']}):\n{r['stdout'][-2000:]}\n{r['stderr'][-2000:]}\n")
        return False
    return True


class NetHost:
    """A namespace with tap0 at HOST_IP and a TCP sink (5000) and source (5001) in it."""

    def __init__(self):
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
        for c in (["netns", "add", NS], ["-n", NS, "link", "set", "lo", "up"],
                  ["-n", NS, "tuntap", "add", "dev", "tap0", "mode", "tap"],
                  ["-n", NS, "addr", "add", f"{HOST_IP}/24", "dev", "tap0"],
                  ["-n", NS, "link", "set", "tap0", "up"]):
            subprocess.run(["ip"] + c, check=True)
        # The servers run in a child process that entered the namespace.
        server = f"""
import socket, threading
def sink():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', 5000)); s.listen(4)
    while True:
        c, _ = s.accept()
        while c.recv(1 << 16): pass
        c.close()
def source():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', 5001)); s.listen(4)
    buf = b'\\0' * (1 << 16)
    while True:
        c, _ = s.accept()
        for _ in range({NET_MB * 16}): c.sendall(buf)
        c.close()
threading.Thread(target=sink, daemon=True).start()
source()
"""
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", server])

    def close(self):
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


def record_and_replay(name, tmp, netns=False):
    log = os.path.join(tmp, f"{name}.log")
    rec = run(["run", "--record", log] + vm_args(name, tmp), netns)
    ok = check(name, rec, "record")
    rep = run(["replay", log])
    ok = check(name, rep, "replay") and ok
    same = rep["stdout"].replace("\r", "") == rec["stdout"].replace("\r", "")
    if not same:
        sys.stderr.write(f"{name}: the replayed console differs from the recorded one\n")
    st = rec["stats"]
    gs = st.get("guest_seconds", 0.0)
    lb = st.get("log_bytes", 0.0)
    return {
        "ok": ok and same,
        "record_wall_s": rec["wall"],
        "replay_wall_s": rep["wall"],
        "replay_over_record": rep["wall"] / rec["wall"] if rec["wall"] else None,
        "icount": st.get("icount_total"),
        "guest_seconds": gs,
        "log_bytes": lb,
        "log_mbit_per_guest_s": lb * 8 / gs / 1e6 if gs else None,
        "replay_summary": next((l for l in rep["stderr"].splitlines() if l.startswith("replayed ")), None),
        "record_mips": st.get("mips"),
    }


def main():
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "ftvm": FTVM, "cmdline": CMDLINE, "host": os.uname().nodename,
               "params": {"N": N, "LOOP": LOOP, "IDLE_S": IDLE_S, "SLEEP_S": SLEEP_S,
                          "DISK_MB": DISK_MB, "NET_MB": NET_MB},
               "workloads": {}, "notes": []}
    failed = False
    tmp = tempfile.mkdtemp(prefix="ftvm-rrb-")
    try:
        if "cpu" in WORKLOADS:
            plain, recorded = [], []
            log = os.path.join(tmp, "cpu-overhead.log")
            for i in range(N):
                r = run(["run"] + vm_args("cpu", tmp))
                failed |= not check("cpu", r, "plain run")
                plain.append(r["wall"])
                r = run(["run", "--record", log] + vm_args("cpu", tmp))
                failed |= not check("cpu", r, "recorded run")
                recorded.append(r["wall"])
                print(f"cpu run {i + 1}/{N}: plain {plain[-1]:.2f} s, recorded {recorded[-1]:.2f} s",
                      file=sys.stderr)
            entry = record_and_replay("cpu", tmp)
            entry.update({"plain_walls_s": plain, "recorded_walls_s": recorded,
                          "plain_median_s": statistics.median(plain),
                          "recorded_median_s": statistics.median(recorded)})
            entry["record_overhead_pct"] = 100 * (entry["recorded_median_s"] / entry["plain_median_s"] - 1)
            results["workloads"]["cpu"] = entry
            failed |= not entry["ok"]
        for name in ("sleep", "idle", "disk", "net"):
            if name not in WORKLOADS:
                continue
            net = None
            if name == "net":
                if os.geteuid() != 0:
                    results["notes"].append("net skipped: needs root for ip netns / ip tuntap")
                    print("net: skipped (not root)", file=sys.stderr)
                    continue
                net = NetHost()
                time.sleep(0.5)
            try:
                entry = record_and_replay(name, tmp, netns=net is not None)
            finally:
                if net:
                    net.close()
            results["workloads"][name] = entry
            failed |= not entry["ok"]
            print(f"{name}: done", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'workload':<8} {'guest s':>8} {'icount':>14} {'record s':>9} {'replay s':>9} "
          f"{'replay/rec':>10} {'log MB':>9} {'Mbit/guest-s':>13}")
    for name, e in results["workloads"].items():
        print(f"{name:<8} {e['guest_seconds']:>8.2f} {int(e['icount'] or 0):>14} "
              f"{e['record_wall_s']:>9.2f} {e['replay_wall_s']:>9.2f} "
              f"{e['replay_over_record']:>10.3f} {e['log_bytes'] / 1e6:>9.3f} "
              f"{e['log_mbit_per_guest_s']:>13.4f}{'' if e['ok'] else '  FAILED'}")
    cpu = results["workloads"].get("cpu")
    if cpu:
        print(f"\nrecord overhead (cpu, median of {N}, alternating): plain {cpu['plain_median_s']:.2f} s, "
              f"recorded {cpu['recorded_median_s']:.2f} s: {cpu['record_overhead_pct']:+.1f} %")
    for note in results["notes"]:
        print(f"note: {note}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(RESULTS, f"replay-{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
