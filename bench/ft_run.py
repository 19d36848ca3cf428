#!/usr/bin/env python3
"""Runs the fault-tolerance benchmark for bench/ft.sh (configured by environment).

For each workload (cpu, disk, net) it boots the same guest as a single `ftvm run`
and as an FT pair (`ftvm primary` + `ftvm backup` on loopback, file arbiter in a
temporary directory), N times each, alternating, and compares them; then it kills
the primary of FAILOVER_N pairs whose guest prints a line every TICK_MS and times the
failover. Prints a table and writes RESULTS/ft-<date>.json. Exit status 1 if a run
failed (a timeout, a non-zero guest status, a lost marker, a wrong checksum, a
failover without output or with a gap in the numbered lines).

Every console is a file (`--serial file=`) polled here every POLL_S; each line gets
the host time (time.monotonic) at which it was first seen. The guest prints marker
lines `FTMARK NAME UPTIME [STATUS]` around each phase, and a phase's time is the host
time between its markers (the guest's /proc/uptime is kept in the JSON as a
cross-check). With FT the console is gated like any output (released when the backup
has acknowledged the log up to it), which shifts both markers alike.

If NETNS is set, this process already runs inside that network namespace (ft.sh
put it there), which holds a bridge at HOST_IP with three TAPs on it: TAP_SINGLE for
`ftvm run`, TAP_PRIMARY and TAP_BACKUP for the pair (the backup's stays silent until
it goes live).

With PIN=1 the machine plays two hosts of one core each: `ftvm run` and the primary
(with all their threads) run on CPU 0, the backup on CPU 1, and this driver (the
network client, the samplers) on CPU 0 too. Unpinned, the pair's two vCPUs share
both CPUs with everything else, while the single run has both CPUs for one VM: the
ratio then also measures running two VMs on the cores one had, not only the FT
overhead that the VMware FT figures compare (a pair on two hosts against one host).
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.dont_write_bytecode = True  # no __pycache__ in bench/
import io_run  # noqa: E402  (the host ends of the TCP transfers)

E = os.environ
FTVM = E.get("FTVM", "")
INITRD = E.get("INITRD", "")
CMDLINE = E.get("CMDLINE", "")
MEM = E.get("MEM", "")
N = int(E.get("N", "0"))
INT_WORK = int(E.get("INT_WORK", "0"))
DISK_MB = int(E.get("DISK_MB", "0"))
NET_MB = int(E.get("NET_MB", "0"))
NET_TIMEOUT = float(E.get("NET_TIMEOUT", "0"))
FAILOVER_N = int(E.get("FAILOVER_N", "0"))
KILL_AFTER = float(E.get("KILL_AFTER", "0"))
TICK_MS = int(E.get("TICK_MS", "0"))
WORKLOADS = E.get("WORKLOADS", "").split()
RUN_TIMEOUT = float(E.get("RUN_TIMEOUT", "0"))
SAMPLE_S = float(E.get("SAMPLE_S", "0"))
FT_ARGS = E.get("FT_ARGS", "").split()
PIN = E.get("PIN", "0") == "1"
# The CPU each role runs on with PIN=1 ("host A" and "host B").
CPU_OF = {"main": 0, "single": 0, "primary": 0, "backup": 1}
RESULTS = E.get("RESULTS", "")
LOGS = E.get("LOGS", "")
NETNS = E.get("NETNS", "")
NET_NOTE = E.get("NET_NOTE", "")
HOST_IP = E.get("HOST_IP", "10.78.0.1")
GUEST_IP = E.get("GUEST_IP", "10.78.0.2")
TAPS = {"single": E.get("TAP_SINGLE", ""), "primary": E.get("TAP_PRIMARY", ""),
        "backup": E.get("TAP_BACKUP", "")}
MAC = "52:54:00:12:34:56"
POLL_S = 0.005
TARGET_RATIO = 0.95
TARGET_FAILOVER_MS = 500.0

UP = "up() { cut -d' ' -f1 /proc/uptime; }; "


def say(text):
    sys.stderr.write(f"ft.sh: {text}\n")
    sys.stderr.flush()


# --- Guest commands ------------------------------------------------------------------

def guest_cmd(workload):
    if workload == "cpu":
        return (UP + "echo FTMARK cpu-begin $(up); "
                f"/bench/intbench {INT_WORK}; "
                "echo FTMARK cpu-end $(up) $?")
    if workload in ("disk", "disk-br"):
        return (UP + "echo FTMARK write-begin $(up); "
                f"dd if=/dev/zero of=/dev/vda bs=1M count={DISK_MB} oflag=direct conv=fsync 2>/dev/null; "
                "echo FTMARK write-end $(up) $?; "
                "echo 3 >/proc/sys/vm/drop_caches; "
                "echo FTMARK read-begin $(up); "
                f"dd if=/dev/vda of=/dev/null bs=1M count={DISK_MB} iflag=direct 2>/dev/null; "
                "echo FTMARK read-end $(up) $?")
    if workload == "net":
        return (UP + f"ip addr add {GUEST_IP}/24 dev eth0 && ip link set eth0 up; sleep 1; "
                "echo FTMARK rx-listen $(up); "
                f"nc -l -p {io_run.RX_PORT} >/dev/null; "
                "echo FTMARK rx-done $(up) $?; "
                "echo FTMARK tx-begin $(up); "
                f"dd if=/dev/zero bs=65536 count={NET_MB * 16} 2>/dev/null | nc {HOST_IP} {io_run.TX_PORT}; "
                "echo FTMARK tx-done $(up) $?")
    if workload == "failover":
        count = int((KILL_AFTER + 30) * 1000 / TICK_MS)  # ends by itself if nobody kills it
        return (UP + "echo FTMARK tick-begin $(up); "
                f"i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo \"tick $i\"; usleep {TICK_MS * 1000}; done; "
                "echo FTMARK tick-end $(up)")
    raise ValueError(workload)


# phase name -> (begin marker, end marker, bytes moved or None)
PHASES = {
    "cpu": {"cpu": ("cpu-begin", "cpu-end", None)},
    "disk": {"disk_write": ("write-begin", "write-end", DISK_MB << 20),
             "disk_read": ("read-begin", "read-end", DISK_MB << 20)},
    # The same guest work, the primary with --backup-reads (the backup reads the
    # shared disk itself; no read data in the log).
    "disk-br": {"disk_write_br": ("write-begin", "write-end", DISK_MB << 20),
                "disk_read_br": ("read-begin", "read-end", DISK_MB << 20)},
    # The net phases are timed by io_run.Net on the host; the markers bound the samples.
    "net": {"net_host_to_guest": ("rx-listen", "rx-done", NET_MB << 20),
            "net_guest_to_host": ("tx-begin", "tx-done", NET_MB << 20)},
}


# --- Consoles, status samples, processes ---------------------------------------------

class Console:
    """Follows a console file; timestamps each line and the first byte."""

    marker = re.compile(r"FTMARK (\S+) ([0-9.]+)(?: (\S+))?")

    def __init__(self, path, on_mark=None):
        self.path = path
        self.on_mark = on_mark
        self.lines = []  # (host time, text)
        self.marks = {}  # name -> (host time, guest uptime, extra)
        self.first_byte_at = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.follow, daemon=True)
        self.thread.start()

    def follow(self):
        f = None
        pending = b""
        while True:
            stopping = self.done.is_set()
            if f is None:
                try:
                    f = open(self.path, "rb")
                except FileNotFoundError:
                    if stopping:
                        return
                    time.sleep(POLL_S)
                    continue
            chunk = f.read()
            now = time.monotonic()
            if chunk:
                if self.first_byte_at is None:
                    self.first_byte_at = now
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    self.line(now, line)
            elif stopping:
                if pending:
                    self.line(now, pending)
                f.close()
                return
            else:
                time.sleep(POLL_S)

    def line(self, now, raw):
        text = raw.decode("utf-8", "replace").strip()
        with self.lock:
            self.lines.append((now, text))
        m = self.marker.search(text)
        if m and m.group(1) not in self.marks:
            self.marks[m.group(1)] = (now, float(m.group(2)), m.group(3))
            if self.on_mark:
                self.on_mark(m.group(1))

    def stop(self):
        self.done.set()
        self.thread.join(timeout=5)

    def text(self):
        with self.lock:
            return "\n".join(t for _, t in self.lines)


def query_status(sock_path):
    """What `ftvm status SOCK` prints, as a dict (the same socket, read directly)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(sock_path)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    out = {}
    for line in data.decode(errors="replace").splitlines():
        if " " in line:
            k, v = line.split(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


class Sampler:
    """Queries a control socket every SAMPLE_S until stopped."""

    def __init__(self, sock_path):
        self.sock_path = sock_path
        self.samples = []  # (host time, status dict)
        self.errors = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(SAMPLE_S):
            if not os.path.exists(self.sock_path):
                continue
            t = time.monotonic()
            try:
                self.samples.append((t, query_status(self.sock_path)))
            except OSError:
                self.errors += 1

    def stop(self):
        self.done.set()
        self.thread.join(timeout=5)


def vcpu_schedstat(pid):
    """(ns run, ns waited for a core) of thread `pid` of process `pid`, or None."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            ran, waited = f.read().split()[:2]
        return int(ran), int(waited)
    except (OSError, ValueError):
        return None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{tid: (thread name, CPU seconds so far)} for each thread of process `pid`."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        # utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
        out[tid] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def spawn(args, log_path, role):
    """An ftvm process in a session of its own (so that stop() reaches only it);
    with PIN=1 on its role's CPU."""
    cpu = CPU_OF[role]
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if PIN else None
    return subprocess.Popen([FTVM] + args, stdin=subprocess.DEVNULL,
                            stdout=open(log_path + ".stdout", "wb"),
                            stderr=open(log_path, "wb"), start_new_session=True,
                            preexec_fn=pin)


def stop(proc):
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm_args(workload, side, tmp):
    args = ["--initrd", INITRD, "--cmdline", CMDLINE, "--memory", MEM,
            "--guest-cmd", guest_cmd(workload)]
    if workload in ("disk", "disk-br"):
        # One image for the pair: the disk is shared, only the live primary writes.
        args += ["--disk", f"path={os.path.join(tmp, 'disk.img')}"]
    if workload == "net":
        args += ["--net", f"tap={TAPS[side]},mac={MAC}"]
    return args


def ft_args(tmp, port, role, workload=None):
    peer = ["--listen" if role == "primary" else "--peer", f"127.0.0.1:{port}"]
    extra = ["--backup-reads"] if workload == "disk-br" and role == "primary" else []
    return peer + ["--arbiter", f"file={os.path.join(tmp, 'arbiter')}",
                   "--control", os.path.join(tmp, f"{role}.sock")] + FT_ARGS + extra


# --- One measured run ----------------------------------------------------------------

def run_once(workload, config, rep):
    """Boots `config` (single or ft) with `workload`; returns a JSON-able dict."""
    tmp = tempfile.mkdtemp(prefix="ftbench-")
    tag = f"ft-{workload}-{config}-{rep}"
    rec = {"workload": workload, "config": config, "rep": rep, "errors": []}
    err = rec["errors"].append
    if workload in ("disk", "disk-br"):
        # Written in full, not sparse (a preallocated image): the guest's writes
        # then overwrite blocks the file has, in pages the host's cache holds,
        # instead of measuring the host file system's block allocation and the
        # host's first touch of fresh page-cache memory, which on this machine
        # varied the single run's write rate from 240 to 370 MB/s.
        with open(os.path.join(tmp, "disk.img"), "wb") as f:
            zeros = bytes(1 << 20)
            for _ in range(DISK_MB + 16):
                f.write(zeros)
            f.flush()
            os.fsync(f.fileno())
    net = None
    if workload == "net":
        net = io_run.Net(types.SimpleNamespace(
            host_ip=HOST_IP, guest_ip=GUEST_IP, timeout=RUN_TIMEOUT,
            bytes=NET_MB << 20, net_timeout=NET_TIMEOUT))

    # The vCPU thread's run and run-queue wait times at each marker (the main
    # thread runs the vCPU, in a single run and in the primary alike).
    sched = {}

    threads = {}

    def on_mark(name):
        main = procs.get("main")
        if main is not None:
            sched[name] = vcpu_schedstat(main.pid)
        threads[name] = {side: thread_cpu(p.pid) for side, p in procs.items()}
        if name == "rx-listen" and net:
            threading.Thread(target=net.send, daemon=True).start()

    procs = {}
    consoles = {}
    sampler = None
    start = time.monotonic()
    try:
        if config == "single":
            con = os.path.join(tmp, "single.console")
            consoles["main"] = Console(con, on_mark)
            procs["main"] = spawn(["run", "--serial", f"file={con}", "--stats"]
                                  + vm_args(workload, "single", tmp),
                                  os.path.join(LOGS, tag + ".stderr"), "single")
        else:
            port = free_port()
            pcon = os.path.join(tmp, "primary.console")
            bcon = os.path.join(tmp, "backup.console")
            consoles["main"] = Console(pcon, on_mark)
            procs["main"] = spawn(["primary"] + ft_args(tmp, port, "primary", workload)
                                  + ["--serial", f"file={pcon}"]
                                  + vm_args(workload, "primary", tmp),
                                  os.path.join(LOGS, tag + "-primary.stderr"), "primary")
            time.sleep(0.2)
            procs["backup"] = spawn(["backup"] + ft_args(tmp, port, "backup", workload)
                                    + ["--serial", f"file={bcon}"]
                                    + vm_args(workload, "backup", tmp),
                                    os.path.join(LOGS, tag + "-backup.stderr"), "backup")
            sampler = Sampler(os.path.join(tmp, "primary.sock"))
        main = procs["main"]
        deadline = start + RUN_TIMEOUT
        while main.poll() is None and time.monotonic() < deadline:
            b = procs.get("backup")
            if b is not None and b.poll() is not None and "backup_rc" not in rec:
                rec["backup_rc"] = b.returncode
                if b.returncode != 0:
                    err(f"the backup exited early with status {b.returncode}")
            time.sleep(0.05)
        rec["timed_out"] = main.poll() is None
        if rec["timed_out"]:
            err(f"timed out after {RUN_TIMEOUT:.0f} s")
            stop(main)
        rec["rc"] = main.wait()
        rec["exit_s"] = time.monotonic() - start
        if "backup" in procs:
            b = procs["backup"]
            try:
                b.wait(timeout=60)
            except subprocess.TimeoutExpired:
                err("the backup did not end within 60 s of the primary")
                stop(b)
            if "backup_rc" not in rec:
                rec["backup_rc"] = b.wait()
                if rec["backup_rc"] != rec["rc"]:
                    err(f"the backup ended with status {rec['backup_rc']}, the primary {rec['rc']}")
    finally:
        for p in procs.values():
            stop(p)
        if sampler:
            sampler.stop()
        for c in consoles.values():
            c.stop()
    if rec["rc"] != 0:
        err(f"ftvm exited with status {rec['rc']}")
        for name, p in procs.items():
            suffix = "" if config == "single" else ("-primary" if name == "main" else "-backup")
            say(f"{tag}{suffix} stderr:\n{tail(os.path.join(LOGS, tag + suffix + '.stderr'))}")
    con = consoles["main"]
    with open(os.path.join(LOGS, tag + ".console"), "w") as f:
        f.write(con.text() + "\n")
    rec["marks"] = {k: {"host_s": v[0] - start, "guest_uptime": v[1], "status": v[2]}
                    for k, v in con.marks.items()}

    # Phases.
    phases = {}
    for name, (b, e, nbytes) in PHASES[workload].items():
        mb, me = con.marks.get(b), con.marks.get(e)
        ph = {"begin_s": None, "end_s": None}
        if mb and me:
            ph.update(begin_s=mb[0] - start, end_s=me[0] - start, host_seconds=me[0] - mb[0],
                      guest_seconds=me[1] - mb[1], status=me[2])
            if me[2] not in (None, "0"):
                err(f"{name}: the guest's command ended with status {me[2]}")
        else:
            err(f"{name}: markers {b}/{e} missing")
        sb, se = sched.get(b), sched.get(e)
        if sb and se and ph.get("host_seconds"):
            # Shares of the phase the vCPU thread ran and waited for a core.
            ph["vcpu_ran_frac"] = (se[0] - sb[0]) / 1e9 / ph["host_seconds"]
            ph["vcpu_runq_frac"] = (se[1] - sb[1]) / 1e9 / ph["host_seconds"]
        tb, te = threads.get(b), threads.get(e)
        if tb and te and ph.get("host_seconds"):
            # CPU seconds of each thread of each side over the phase, as a share of it.
            cpu = {}
            for side in te:
                for tid, (comm, secs) in te[side].items():
                    before = tb.get(side, {}).get(tid, (comm, 0.0))[1]
                    key = f"{'primary' if side == 'main' and config == 'ft' else side}/{comm}"
                    cpu[key] = cpu.get(key, 0.0) + (secs - before) / ph["host_seconds"]
            ph["thread_cpu_frac"] = {k: round(v, 3) for k, v in
                                     sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.005}
        if nbytes and ph.get("host_seconds"):
            ph["mb_s"] = nbytes / ph["host_seconds"] / 1e6
            ph["mb_s_guest_clock"] = (nbytes / ph["guest_seconds"] / 1e6
                                      if ph["guest_seconds"] > 0 else None)
        phases[name] = ph
    if workload == "cpu":
        text = con.text()
        m = re.search(r"elapsed_ns=(\d+)", text)
        st = re.search(r"intbench work=\d+ checksum=([0-9a-f]+) status=(\w+)", text)
        phases["cpu"]["intbench_elapsed_s"] = int(m.group(1)) / 1e9 if m else None
        phases["cpu"]["intbench_status"] = st.group(2) if st else None
        if not st or st.group(2) != "ok":
            err(f"intbench: {'no result line' if not st else 'status ' + st.group(2)}")
    if workload == "net":
        time.sleep(0.3)
        with net.lock:
            results = dict(net.results)
            rec["errors"] += net.errors
        net.server.close()
        for metric in ("net_host_to_guest", "net_guest_to_host"):
            r = results.get(metric)
            if not r or not r["mb_s"]:
                err(f"{metric}: no transfer ({r and r.get('note')})")
                continue
            phases[metric].update(mb_s=r["mb_s"], transfer_seconds=r["seconds"],
                                  transfer_bytes=r["bytes"], note=r["note"])
            if r["note"].startswith("error") or r["note"] == "guest closed early":
                err(f"{metric}: {r['note']}")
    rec["phases"] = phases

    if sampler:
        rec["status_samples"] = [dict(t=t - start, **{k: st.get(k) for k in (
            "lag_ms", "log_bytes", "log_bytes_per_s", "outputs_held", "throttled", "mode",
            "vcpu_waited_ms", "outputs_out", "output_wait_us_total")})
            for t, st in sampler.samples]
        rec["status_errors"] = sampler.errors
    analyze(rec)
    shutil.rmtree(tmp, ignore_errors=True)
    return rec


def analyze(rec):
    """Adds to an FT run's phases what its primary's status samples say: whether the
    pair was still paired at the phase's end, and, from the paired samples inside the
    phase, the backup lag and the logging bandwidth. Records a split (the primary's
    mode left `paired`) before the workload ended as an error."""
    samples = rec.get("status_samples")
    if samples is None:
        return
    phases = rec["phases"]
    ends = [ph["end_s"] for ph in phases.values() if ph.get("end_s") is not None]
    until = max(ends) if ends else rec["exit_s"]
    paired_until = None  # the last sample that still said paired, if the pair split
    for i, st in enumerate(samples):
        if st.get("mode") not in (None, "paired"):
            if st["t"] <= until and "split_at_s" not in rec:
                rec["split_at_s"] = st["t"]
                rec["split_mode"] = st.get("mode")
                rec["errors"].append(
                    f"the pair split {st['t']:.1f} s after the start, before the workload ended "
                    f"(primary: {st.get('mode')}); this run's figures after that are not FT")
            paired_until = samples[i - 1]["t"] if i else 0.0
            break
    for ph in phases.values():
        if ph.get("end_s") is None:
            continue
        ph["paired"] = paired_until is None or ph["end_s"] <= paired_until
        inside = [st for st in samples if ph["begin_s"] <= st["t"] <= ph["end_s"]
                  and st.get("mode") == "paired"]
        ph["samples"] = len(inside)
        lags = [st["lag_ms"] for st in inside if isinstance(st.get("lag_ms"), (int, float))]
        ph["lag_ms_median"] = statistics.median(lags) if lags else None
        ph["lag_ms_max"] = max(lags) if lags else None
        ph["throttled_samples"] = sum(1 for st in inside if st.get("throttled") == "true")
        rates = [st["log_bytes_per_s"] for st in inside
                 if isinstance(st.get("log_bytes_per_s"), (int, float))]
        ph["log_bytes_per_s_median"] = statistics.median(rates) if rates else None
        # The mean over the phase: log bytes between the samples that bound it (if the
        # pair split during the phase, up to the last paired sample in it). With two
        # samples or more inside the phase, between the first and the last of them:
        # the samples around it may reach into the next phase (the disk write phase
        # is followed at once by the read phase, which logs a hundred times more).
        before = [st for st in samples if st["t"] <= ph["begin_s"]]
        after = [st for st in samples if st["t"] >= ph["end_s"]]
        first = before[-1] if before else (inside[0] if inside else None)
        if ph["paired"]:
            last = after[0] if after else (inside[-1] if inside else None)
        else:
            last = inside[-1] if inside else None
        lo, hi = (inside[0], inside[-1]) if len(inside) >= 2 else (first, last)
        ph["log_bytes_per_s_mean"] = None
        if lo and lo.get("mode") == "paired" and hi and hi["t"] > lo["t"] and None not in (lo.get("log_bytes"),
                                                                                         hi.get("log_bytes")):
            ph["log_bytes_per_s_mean"] = (hi["log_bytes"] - lo["log_bytes"]) / (hi["t"] - lo["t"])
        # How long the primary's vCPU stood paused for a lagging backup between the
        # samples that bound the phase (the throttle's cost).
        ph["vcpu_waited_ms"] = None
        if first and last and last["t"] > first["t"] and isinstance(first.get("vcpu_waited_ms"), (int, float)) \
                and isinstance(last.get("vcpu_waited_ms"), (int, float)):
            ph["vcpu_waited_ms"] = last["vcpu_waited_ms"] - first["vcpu_waited_ms"]
        # How long the outputs let out between those samples waited for the backup's
        # acknowledgement, on average (the output rule's delay).
        ph["output_wait_ms_mean"] = None
        if first and last and None not in (first.get("outputs_out"), last.get("outputs_out"),
                                           first.get("output_wait_us_total"),
                                           last.get("output_wait_us_total")) \
                and last["outputs_out"] > first["outputs_out"]:
            ph["output_wait_ms_mean"] = ((last["output_wait_us_total"] - first["output_wait_us_total"])
                                         / (last["outputs_out"] - first["outputs_out"]) / 1000)


# --- Failover ------------------------------------------------------------------------

def ticks(lines):
    out = []
    for _, text in lines:
        m = re.search(r"tick (\d+)$", text)
        if m:
            out.append(int(m.group(1)))
    return out


def failover_once(rep):
    tmp = tempfile.mkdtemp(prefix="ftbench-")
    tag = f"ft-failover-{rep}"
    rec = {"rep": rep, "errors": []}
    err = rec["errors"].append
    port = free_port()
    pcon = os.path.join(tmp, "primary.console")
    bcon = os.path.join(tmp, "backup.console")
    pc, bc = Console(pcon), Console(bcon)
    procs = {}
    start = time.monotonic()
    try:
        procs["primary"] = spawn(["primary"] + ft_args(tmp, port, "primary")
                                 + ["--serial", f"file={pcon}"]
                                 + vm_args("failover", "primary", tmp),
                                 os.path.join(LOGS, tag + "-primary.stderr"), "primary")
        time.sleep(0.2)
        procs["backup"] = spawn(["backup"] + ft_args(tmp, port, "backup")
                                + ["--serial", f"file={bcon}"]
                                + vm_args("failover", "backup", tmp),
                                os.path.join(LOGS, tag + "-backup.stderr"), "backup")
        deadline = start + RUN_TIMEOUT
        # Boot, then KILL_AFTER seconds of ticks.
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs.values()):
                err("a side exited before the failure: " + ", ".join(
                    f"{k} {p.returncode}" for k, p in procs.items()))
                break
            mb = pc.marks.get("tick-begin")
            if mb and time.monotonic() - mb[0] >= KILL_AFTER:
                break
            time.sleep(0.01)
        else:
            err("the workload did not start in time")
        if not rec["errors"]:
            try:
                st = query_status(os.path.join(tmp, "primary.sock"))
                rec["primary_status_before"] = st
                if st.get("mode") != "paired":
                    err(f"the pair was not paired when the primary was killed (primary: {st.get('mode')})")
            except OSError as e:
                rec["primary_status_before"] = str(e)
            if pc.first_byte_at is None:
                err("the primary printed nothing")
            killed = time.monotonic()
            os.kill(procs["primary"].pid, signal.SIGKILL)
            procs["primary"].wait()
            rec["killed_s"] = killed - start
            # The new primary's first output, then a second of it.
            limit = killed + 30
            while time.monotonic() < limit and bc.first_byte_at is None:
                if procs["backup"].poll() is not None:
                    err(f"the backup exited with status {procs['backup'].returncode}")
                    break
                time.sleep(POLL_S / 2)
            if bc.first_byte_at is not None:
                rec["failover_ms"] = (bc.first_byte_at - killed) * 1000
                time.sleep(1.0)
            elif not rec["errors"]:
                err("the backup printed nothing within 30 s of the failure")
            try:
                rec["backup_status_after"] = query_status(os.path.join(tmp, "backup.sock"))
            except OSError as e:
                rec["backup_status_after"] = str(e)
    finally:
        for p in procs.values():
            stop(p)
        pc.stop()
        bc.stop()
    before, after = ticks(pc.lines), ticks(bc.lines)
    rec["last_tick_primary"] = before[-1] if before else None
    rec["first_tick_backup"] = after[0] if after else None
    rec["ticks_after"] = len(after)
    both = sorted(set(before) | set(after))
    gaps = [(a, b) for a, b in zip(both, both[1:]) if b != a + 1]
    rec["duplicates"] = len(before) + len(after) - len(both)
    rec["gaps"] = gaps
    if gaps:
        err(f"numbered lines missing: {gaps[:5]}")
    if "failover_ms" in rec and len(after) < 2:
        err("the new primary did not go on printing")
    # The outage as the console shows it: last line of the old primary to the first
    # numbered line of the new one, on the host's clock.
    last_p = max((t for t, text in pc.lines if re.search(r"tick \d+$", text)), default=None)
    first_b = min((t for t, text in bc.lines if re.search(r"tick \d+$", text)), default=None)
    if last_p is not None and first_b is not None:
        rec["console_gap_ms"] = (first_b - last_p) * 1000
    with open(os.path.join(LOGS, tag + ".console"), "w") as f:
        f.write(pc.text() + "\n--- backup ---\n" + bc.text() + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return rec


# --- Report --------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(v):
    return "-" if v is None else f"{v * 100:.0f}"


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


LABELS = {"cpu": ("CPU: intbench", "s", False), "disk_write": ("disk write (dd)", "MB/s", True),
          "disk_read": ("disk read (dd)", "MB/s", True),
          "disk_write_br": ("disk write, backup reads", "MB/s", True),
          "disk_read_br": ("disk read, backup reads", "MB/s", True),
          "net_host_to_guest": ("TCP host -> guest", "MB/s", True),
          "net_guest_to_host": ("TCP guest -> host", "MB/s", True)}


def summarize(runs, failovers):
    """Per metric, medians over the runs of each configuration. The FT figures come
    from the phases that ran while the pair was paired; if none did, from all of them,
    flagged `ft_not_paired`."""
    metrics = []
    for w in PHASES:
        for name in PHASES[w]:
            sel = {c: [r["phases"].get(name, {}) for r in runs
                       if r["workload"] == w and r["config"] == c] for c in ("single", "ft")}
            if not sel["single"] and not sel["ft"]:
                continue
            label, unit, higher_better = LABELS[name]
            key = "mb_s" if higher_better else "host_seconds"
            paired = [p for p in sel["ft"] if p.get("paired") and p.get(key) is not None]
            ft_sel = paired or sel["ft"]
            single = med(p.get(key) for p in sel["single"])
            ft = med(p.get(key) for p in ft_sel)
            ratio = None
            if single and ft:
                ratio = ft / single if higher_better else single / ft
            # The ratio of each repetition's own pair of runs (single and FT run one
            # after the other): the machine's speed drifts over minutes, and a pair
            # of neighbouring runs shares most of that drift.
            by_rep = {c: {r["rep"]: r["phases"].get(name, {}) for r in runs
                          if r["workload"] == w and r["config"] == c} for c in ("single", "ft")}
            paired_ratios = []
            for rep in sorted(by_rep["single"]):
                s_ph, f_ph = by_rep["single"][rep], by_rep["ft"].get(rep, {})
                sv, fv = s_ph.get(key), f_ph.get(key)
                if sv and fv and f_ph.get("paired"):
                    paired_ratios.append(fv / sv if higher_better else sv / fv)
            clock = "intbench_elapsed_s" if w == "cpu" else "mb_s_guest_clock"
            metrics.append({
                "metric": label, "phase": name, "unit": unit,
                "single": single, "ft": ft, "ratio_ft_over_single": ratio,
                "ratios_by_rep": paired_ratios,
                "ratio_by_rep_median": med(paired_ratios),
                "target": f">= {TARGET_RATIO}", "pass": None if ratio is None else ratio >= TARGET_RATIO,
                "single_runs": [p.get(key) for p in sel["single"]],
                "ft_runs": [p.get(key) for p in sel["ft"]],
                "ft_runs_paired": [bool(p.get("paired")) for p in sel["ft"]],
                "ft_paired_count": len(paired),
                "ft_not_paired": not paired and bool(sel["ft"]),
                "guest_clock_single": med(p.get(clock) for p in sel["single"]),
                "guest_clock_ft": med(p.get(clock) for p in ft_sel),
                # From the samples taken while paired, in every FT run of the phase.
                "log_mbit_s": med(p["log_bytes_per_s_mean"] * 8 / 1e6 for p in sel["ft"]
                                  if p.get("log_bytes_per_s_mean") is not None),
                "log_mbit_s_median_sample": med(p["log_bytes_per_s_median"] * 8 / 1e6 for p in sel["ft"]
                                                if p.get("log_bytes_per_s_median") is not None),
                "lag_ms_median": med(p.get("lag_ms_median") for p in sel["ft"]),
                "lag_ms_max": max([p["lag_ms_max"] for p in sel["ft"] if p.get("lag_ms_max") is not None],
                                  default=None),
                "throttled_samples": sum(p.get("throttled_samples") or 0 for p in sel["ft"]),
                "vcpu_waited_ms": [p.get("vcpu_waited_ms") for p in sel["ft"]],
                "output_wait_ms_mean": med(p.get("output_wait_ms_mean") for p in sel["ft"]),
                "vcpu_runq_frac_single": med(p.get("vcpu_runq_frac") for p in sel["single"]),
                "vcpu_runq_frac_ft": med(p.get("vcpu_runq_frac") for p in sel["ft"]),
                "samples": sum(p.get("samples") or 0 for p in sel["ft"]),
            })
    fo = [r.get("failover_ms") for r in failovers]
    failover = None
    if failovers:
        failover = {"failover_ms_median": med(fo), "runs_ms": fo,
                    "lag_ms_at_kill": [(r.get("primary_status_before") or {}).get("lag_ms")
                                       if isinstance(r.get("primary_status_before"), dict) else None
                                       for r in failovers],
                    "console_gap_ms_median": med(r.get("console_gap_ms") for r in failovers),
                    "target": f"<= {TARGET_FAILOVER_MS:.0f} ms",
                    "pass": None if med(fo) is None else med(fo) <= TARGET_FAILOVER_MS}
    return metrics, failover


def print_table(metrics, failover, n):
    print()
    print(f"{'metric':<31} {'single':>8} {'FT':>8} {'FT/single':>9} {'by rep':>7} {'paired':>6} {'log Mbit/s':>10} "
          f"{'lag ms med/max':>15} {'runq % s/FT':>11}  target")
    for m in metrics:
        print(f"{m['metric'] + ' (' + m['unit'] + ')':<31} {fmt(m['single'], '.2f'):>8} "
              f"{fmt(m['ft'], '.2f') + ('*' if m['ft_not_paired'] else ''):>8} "
              f"{fmt(m['ratio_ft_over_single'], '.3f'):>9} "
              f"{fmt(m.get('ratio_by_rep_median'), '.3f'):>7} "
              f"{str(m['ft_paired_count']) + '/' + str(len(m['ft_runs'])):>6} "
              f"{fmt(m['log_mbit_s'], '.2f'):>10} "
              f"{fmt(m['lag_ms_median']) + '/' + fmt(m['lag_ms_max']):>15} "
              f"{pct(m.get('vcpu_runq_frac_single')) + '/' + pct(m.get('vcpu_runq_frac_ft')):>11}  "
              f">= {TARGET_RATIO}{'' if m['pass'] in (None, True) else ' (below)'}")
    if failover:
        runs_txt = ", ".join(fmt(x, ".0f") for x in failover["runs_ms"])
        lags = ", ".join(fmt(x, ".0f") for x in failover["lag_ms_at_kill"])
        print(f"{'failover (ms)':<31} {'':>8} {fmt(failover['failover_ms_median'], '.0f'):>8} "
              f"{'':>9} {'':>7} {'':>6} {'':>10} {'':>15} {'':>11}  <= {TARGET_FAILOVER_MS:.0f}"
              f"{'' if failover['pass'] in (None, True) else ' (above)'}")
        print(f"  failover runs: {runs_txt} ms; backup lag at the kill: {lags} ms; "
              f"console gap median {fmt(failover['console_gap_ms_median'], '.0f')} ms")
    print(f"CPU: wall seconds of the intbench phase, ratio single/FT; the others MB/s, ratio "
          f"FT/single; medians of {n} run(s) per configuration; 'by rep': the median of the "
          f"ratios of each repetition's own single and FT runs, which ran one after the other. 'paired': FT runs whose phase "
          f"ended while the pair was still paired (the FT figure comes from those; * = none did, "
          f"the figure is then not FT); log and lag from the status samples taken while paired; "
          f"'runq %': the share of the phase the vCPU thread (single, primary) stood ready "
          f"to run but waited for a core.")


def report(path):
    """Re-analyzes a results file (same measurements) and prints its table."""
    with open(path) as f:
        d = json.load(f)
    for r in d["runs"]:
        r["errors"] = [e for e in r["errors"] if not e.startswith("the pair split")]
        r.pop("split_at_s", None)
        r.pop("split_mode", None)
        analyze(r)
    d["metrics"], d["failover"] = summarize(d["runs"], d["failovers"])
    d["failed"] = any(r["errors"] for r in d["runs"] + d["failovers"])
    print_table(d["metrics"], d["failover"], int(d["config"].get("N") or 1))
    with open(path, "w") as f:
        json.dump(d, f, indent=1)
    say(f"updated {path}")
    return 1 if d["failed"] else 0


def main():
    if PIN:
        if os.cpu_count() < 2:
            say("PIN=1 needs two CPUs")
            return 2
        # The client and the samplers live on "host A", with the single run and the primary.
        os.sched_setaffinity(0, {CPU_OF["main"]})
    runs = []
    failovers = []
    failed = False
    workloads = [w for w in WORKLOADS if w != "failover"]
    for w in workloads:
        if w == "net" and not NETNS:
            say(f"net skipped: {NET_NOTE or 'no network namespace'}")
            continue
        for rep in range(1, N + 1):
            order = ("single", "ft") if rep % 2 else ("ft", "single")
            for config in order:
                say(f"{w} {config} run {rep}/{N} ...")
                r = run_once(w, config, rep)
                runs.append(r)
                bits = []
                for name, ph in r["phases"].items():
                    if ph.get("mb_s"):
                        bits.append(f"{name}={ph['mb_s']:.1f}MB/s")
                    elif ph.get("host_seconds") is not None:
                        bits.append(f"{name}={ph['host_seconds']:.2f}s")
                    if ph.get("lag_ms_max") is not None:
                        bits.append(f"lag med/max={fmt(ph['lag_ms_median'])}/{fmt(ph['lag_ms_max'])}ms")
                    if ph.get("log_bytes_per_s_mean") is not None:
                        bits.append(f"log={ph['log_bytes_per_s_mean'] * 8 / 1e6:.2f}Mbit/s")
                    if ph.get("vcpu_waited_ms") is not None:
                        bits.append(f"paused={ph['vcpu_waited_ms']:.0f}ms")
                    if ph.get("output_wait_ms_mean") is not None:
                        bits.append(f"output wait={ph['output_wait_ms_mean']:.3f}ms")
                    if ph.get("vcpu_runq_frac") is not None:
                        bits.append(f"vcpu ran/runq={ph['vcpu_ran_frac']:.0%}/{ph['vcpu_runq_frac']:.0%}")
                    if ph.get("thread_cpu_frac"):
                        top = list(ph["thread_cpu_frac"].items())[:5]
                        bits.append("cpu[" + " ".join(f"{k}={v:.2f}" for k, v in top) + "]")
                say(f"    rc={r['rc']} exit={r['exit_s']:.1f}s " + " ".join(bits)
                    + (" ERRORS: " + "; ".join(r["errors"]) if r["errors"] else ""))
                failed |= bool(r["errors"])
    if "failover" in WORKLOADS:
        for rep in range(1, FAILOVER_N + 1):
            say(f"failover run {rep}/{FAILOVER_N} ...")
            r = failover_once(rep)
            failovers.append(r)
            say(f"    failover={fmt(r.get('failover_ms'), '.0f')}ms console gap="
                f"{fmt(r.get('console_gap_ms'), '.0f')}ms ticks {r['last_tick_primary']} -> "
                f"{r['first_tick_backup']} duplicates={r['duplicates']}"
                + (" ERRORS: " + "; ".join(r["errors"]) if r["errors"] else ""))
            failed |= bool(r["errors"])

    metrics, failover = summarize(runs, failovers)
    print_table(metrics, failover, N)

    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.join(RESULTS, f"ft-{stamp}.json")
    config = {k: E.get(k) for k in ("FTVM", "INITRD", "CMDLINE", "MEM", "N", "INT_WORK", "DISK_MB",
                                     "NET_MB", "NET_TIMEOUT", "FAILOVER_N", "KILL_AFTER", "TICK_MS",
                                     "WORKLOADS", "RUN_TIMEOUT", "SAMPLE_S", "FT_ARGS", "PIN", "NETNS",
                                     "NET_NOTE", "FTVM_VERSION", "HOST")}
    with open(out, "w") as f:
        json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "config": config, "metrics": metrics, "failover": failover,
                   "failed": failed, "runs": runs, "failovers": failovers}, f, indent=1)
    say(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        sys.exit(report(sys.argv[2]))
    sys.exit(main())
