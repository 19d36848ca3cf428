#!/usr/bin/env python3
"""Runs one emulator process, watches its console, reports timings as JSON.

Usage: runguest.py [--timeout S] [--ready-line TEXT] [--out FILE] -- COMMAND...

The command's stdout is read as a stream and timestamped as it arrives; the time
of the first line containing the ready text (default `ftvm-guest: ready`) is
measured from just before the process is spawned. The guest is left to power
off by itself; after --timeout seconds the process gets SIGTERM, then SIGKILL.

Printed on stdout (one JSON object):
  ready_s       seconds from spawn to the ready line (null if never seen)
  exit_s        seconds from spawn to process exit
  rc            exit status (negative: killed by that signal)
  timed_out     true if the timeout expired
  elapsed_ns    from an `elapsed_ns=N` console line (the benchmark programs)
  status        from a `status=...` console line
  result_line   the benchmark program's first output line
  icount_user, icount_total   from `icount_user=N` / `icount_total=N` lines on
                stderr (ftvm --stats, QEMU with bench's insn_count plugin)
The full console (and stderr) go to --out and --out.stderr if given.
"""

import argparse
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--ready-line", default="ftvm-guest: ready")
    p.add_argument("--out", default=None)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if a.command and a.command[0] == "--":
        a.command = a.command[1:]
    if not a.command:
        p.error("no command given")
    return a


def stop(proc):
    """SIGTERM (QEMU then runs its exit handlers, e.g. plugins), then SIGKILL."""
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


def main():
    a = parse_args()
    ready = a.ready_line.encode()
    start = time.monotonic()
    proc = subprocess.Popen(
        a.command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # own process group: the timeout kills all of it
    )
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out, err = bytearray(), bytearray()
    ready_s = None
    timed_out = False
    deadline = start + a.timeout
    open_streams = 2
    while open_streams:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            now = time.monotonic()
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            if key.data == "out":
                # Search the tail that may contain a line split across reads.
                tail_from = max(0, len(out) - len(ready))
                out += chunk
                if ready_s is None and out.find(ready, tail_from) >= 0:
                    ready_s = now - start
            else:
                err += chunk
    if timed_out:
        stop(proc)
        # Collect what the exit handlers printed (e.g. the plugin's counts).
        for stream, buf in ((proc.stdout, out), (proc.stderr, err)):
            try:
                rest = stream.read()
                if rest:
                    buf += rest
            except (OSError, ValueError):
                pass
    rc = proc.wait()
    exit_s = time.monotonic() - start

    console = out.decode("utf-8", "replace")
    errtext = err.decode("utf-8", "replace")
    if a.out:
        with open(a.out, "w") as f:
            f.write(console)
        with open(a.out + ".stderr", "w") as f:
            f.write(errtext)

    def last_int(pattern, text):
        m = re.findall(pattern, text)
        return int(m[-1]) if m else None

    result_line = None
    m = re.search(r"^((?:int|fp)bench work=.*?)\r?$", console, re.M)
    if m:
        result_line = m.group(1)
    status = None
    m = re.search(r"(?:int|fp)bench work=\S+ .*?status=(\S+)", console)
    if m:
        status = m.group(1)
    report = {
        "ready_s": ready_s,
        "exit_s": exit_s,
        "rc": rc,
        "timed_out": timed_out,
        "elapsed_ns": last_int(r"elapsed_ns=(\d+)", console),
        "status": status,
        "result_line": result_line,
        "icount_user": last_int(r"icount_user=(\d+)", errtext),
        "icount_total": last_int(r"icount_total=(\d+)", errtext),
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
