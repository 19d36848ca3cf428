#!/usr/bin/env python3
"""Runs one guest for bench/io.sh and reports what it measured as JSON.

Usage: io_run.py --kind disk|net [--timeout S] [--out LOG] [--net-host IP]
                 [--bytes N] [--net-timeout S] -- COMMAND...

The command is an emulator whose guest runs io.sh's guest script, which prints
marker lines `IOMARK NAME UPTIME [EXTRA]` (UPTIME: the guest's /proc/uptime, 10 ms
resolution; busybox's date has no %N). Its console is read as a stream.

kind disk: the guest times `dd` itself; for each NAME (write, read) with a begin and
  an end marker, MB/s = bytes / (end - begin) / 1e6 on the guest's clock.
kind net: the host side is here, in this process (io.sh runs it inside the network
  namespace): on `IOMARK rx-listen` it connects to the guest's `nc -l` and sends
  zeros (host->guest), and it listens for the guest's `nc` that sends /dev/zero
  (guest->host). Both stop at --bytes or after --net-timeout seconds, and are timed
  on the host (time.monotonic): from connect/accept to the guest's close (rx) or to
  the last byte wanted (tx).

Printed on stdout (one JSON object): ready_s, exit_s, rc, timed_out, results
{metric: {mb_s, bytes, seconds, clock}}, errors [..].
"""

import argparse
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

RX_PORT = 5001  # guest listens: host -> guest
TX_PORT = 5002  # host listens: guest -> host
CHUNK = 1 << 16


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=("disk", "net"), required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", default=None)
    p.add_argument("--guest-ip", default="10.77.0.2")
    p.add_argument("--host-ip", default="10.77.0.1")
    p.add_argument("--bytes", type=int, default=64 << 20)
    p.add_argument("--disk-bytes", type=int, default=128 << 20)
    p.add_argument("--net-timeout", type=float, default=60.0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.command and a.command[0] == "--":
        a.command = a.command[1:]
    if not a.command:
        p.error("no command given")
    return a


class Net:
    """The host's ends of the two TCP transfers."""

    def __init__(self, args):
        self.args = args
        self.results = {}
        self.errors = []
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((args.host_ip, TX_PORT))
        self.server.listen(1)
        self.server.settimeout(args.timeout)
        threading.Thread(target=self.receive, daemon=True).start()

    def record(self, metric, nbytes, seconds, note=""):
        with self.lock:
            self.results[metric] = {
                "mb_s": nbytes / seconds / 1e6 if seconds > 0 and nbytes > 0 else None,
                "bytes": nbytes,
                "seconds": seconds,
                "clock": "host",
                "note": note,
            }

    def error(self, text):
        with self.lock:
            self.errors.append(text)

    def send(self):
        """host -> guest: connect to the guest's `nc -l`, send zeros, wait for its close."""
        a = self.args
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection((a.guest_ip, RX_PORT), timeout=5)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    self.error(f"host->guest: cannot connect: {e}")
                    return
                time.sleep(0.2)
        buf = bytes(CHUNK)
        sent = 0
        note = ""
        t0 = time.monotonic()
        try:
            sock.settimeout(a.net_timeout)
            while sent < a.bytes:
                if time.monotonic() - t0 > a.net_timeout:
                    note = f"stopped at the {a.net_timeout:.0f} s bound"
                    break
                sent += sock.send(buf[: min(CHUNK, a.bytes - sent)])
            sock.shutdown(socket.SHUT_WR)
            # The guest's nc closes once it has read everything: the data has arrived.
            while sock.recv(CHUNK):
                pass
        except OSError as e:
            note = f"error after {sent} bytes: {e}"
        t1 = time.monotonic()
        sock.close()
        self.record("net_host_to_guest", sent, t1 - t0, note)

    def receive(self):
        """guest -> host: accept the guest's nc, read up to --bytes, close."""
        a = self.args
        try:
            conn, _ = self.server.accept()
        except OSError as e:
            self.error(f"guest->host: no connection: {e}")
            return
        got = 0
        note = ""
        t0 = time.monotonic()
        t1 = t0
        try:
            conn.settimeout(a.net_timeout)
            while got < a.bytes:
                if time.monotonic() - t0 > a.net_timeout:
                    note = f"stopped at the {a.net_timeout:.0f} s bound"
                    break
                data = conn.recv(min(1 << 20, a.bytes - got))
                if not data:
                    note = "guest closed early"
                    break
                got += len(data)
                t1 = time.monotonic()
        except OSError as e:
            note = f"error after {got} bytes: {e}"
            t1 = time.monotonic()
        conn.close()
        self.record("net_guest_to_host", got, t1 - t0, note)


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


def watch(a, proc, sel, start, log, marks, net):
    """Reads the console until the process ends or the timeout; returns (ready_s,
    timed_out). Records the IOMARK lines in `marks`; starts the host->guest sender."""
    marker = re.compile(r"IOMARK (\S+) ([0-9.]+)(?: (\S+))?")
    ready_s = None
    timed_out = False
    pending = b""
    while True:
        left = a.timeout - (time.monotonic() - start)
        if left <= 0:
            timed_out = True
            break
        if not sel.select(timeout=min(left, 1.0)):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        if log:
            log.write(chunk)
            log.flush()
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip()
            if ready_s is None and "ftvm-guest: ready" in text:
                ready_s = time.monotonic() - start
            m = marker.search(text)
            if m:
                name, up, extra = m.group(1), float(m.group(2)), m.group(3)
                marks[name] = (up, extra)
                if name == "rx-listen" and net:
                    threading.Thread(target=net.send, daemon=True).start()
    return ready_s, timed_out


def main():
    a = parse_args()
    # Killed (io.sh interrupted): stop the emulator too, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    net = Net(a) if a.kind == "net" else None
    marks = {}
    log = open(a.out, "wb") if a.out else None
    start = time.monotonic()
    proc = subprocess.Popen(a.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(a.out + ".stderr", "wb") if a.out else subprocess.DEVNULL,
                            start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        ready_s, timed_out = watch(a, proc, sel, start, log, marks, net)
    finally:
        stop(proc)
    rc = proc.wait()
    exit_s = time.monotonic() - start
    if log:
        log.close()

    results = {}
    errors = []
    if a.kind == "disk":
        for name in ("write", "read"):
            b, e = marks.get(f"{name}-begin"), marks.get(f"{name}-end")
            if not b or not e:
                errors.append(f"disk {name}: markers missing")
                continue
            status = e[1] or "?"
            secs = e[0] - b[0]
            ok = status == "0"
            results[f"disk_{name}"] = {
                "mb_s": a.disk_bytes / secs / 1e6 if ok and secs > 0 else None,
                "bytes": a.disk_bytes,
                "seconds": secs,
                "clock": "guest /proc/uptime",
                "note": "" if ok else f"dd exit status {status}",
            }
            if not ok:
                errors.append(f"disk {name}: dd exit status {status}")
    else:
        time.sleep(0.5)
        with net.lock:
            results = dict(net.results)
            errors = list(net.errors)
        for metric in ("net_host_to_guest", "net_guest_to_host"):
            if metric not in results:
                errors.append(f"{metric}: no transfer")
        net.server.close()
    print(json.dumps({
        "ready_s": ready_s,
        "exit_s": exit_s,
        "rc": rc,
        "timed_out": timed_out,
        "results": results,
        "errors": errors,
        "marks": {k: v[0] for k, v in marks.items()},
    }))


if __name__ == "__main__":
    sys.exit(main())
