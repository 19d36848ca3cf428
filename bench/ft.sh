#!/usr/bin/env bash
# ftvm's fault tolerance: the FT pair (ftvm primary + ftvm backup on this machine,
# logging channel on loopback, file arbiter in a temporary directory) against a single
# `ftvm run`, side by side in one run, on a CPU-bound, a disk-bound and a network-bound
# guest workload; logging bandwidth and backup lag from the primary's control socket;
# then the failover time (SIGKILL of the primary to the new primary's first output).
# See bench/README.md ("Fault tolerance") for what each number means. The network
# workload needs root (ip netns, ip tuntap); without root it is skipped.
#
# Environment (all optional):
#   FTVM          ftvm binary; default <repo>/target/release/ftvm
#   BUILD=1       build it first (cargo build --release -p ftvm)
#   FTVM_IMAGES   guest images dir (default ~/.cache/ftvm/images); the guest is the
#                 default Debian one with bench/build/bench-initrd.img (built here
#                 with make -C bench initrd if missing) for /bench/intbench
#   N             runs per workload and configuration, alternating (default 1)
#   INT_WORK      intbench rounds (default 4000: about 1.3 G instructions)
#   DISK_MB       MiB written then read by dd (default 512)
#   NET_MB        MiB per TCP direction (default 32); NET_TIMEOUT bound per direction (60 s)
#   FAILOVER_N    failovers (default 3); KILL_AFTER seconds of ticks before the
#                 SIGKILL (default 3); TICK_MS period of the guest's lines (default 10)
#   WORKLOADS     default "cpu disk disk-br net failover" (disk-br: the disk workload
#                 with the primary given --backup-reads)
#   FT_ARGS       extra flags for both sides of the pair (default none: the defaults,
#                 heartbeat 50 ms, timeout 400 ms, max lag 100 ms, 8M log buffer)
#   PIN=1         two hosts of one CPU each: the single run, the primary and the
#                 driver (network client) on CPU 0, the backup on CPU 1 (default 0:
#                 unpinned, the pair shares both CPUs; see bench/README.md)
#   SAMPLE_S      status sampling period (default 0.5)
#   CMDLINE       kernel command line (default "console=ttyS0 quiet cryptomgr.notests=1")
#   RUN_TIMEOUT   seconds per boot before it is killed (default 600)
#   RESULTS       output dir (default bench/results)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export FTVM=${FTVM:-$repo/target/release/ftvm}
if [[ ${BUILD:-0} == 1 ]]; then
    (cd "$repo" && cargo build --release -p ftvm) >&2
fi
say() { echo "ft.sh: $*" >&2; }
[[ -x $FTVM ]] || { say "no ftvm binary at $FTVM (BUILD=1 builds it)"; exit 2; }
images=${FTVM_IMAGES:-$HOME/.cache/ftvm/images}
[[ -f $images/initrd.img ]] || { say "no guest images in $images (run 'ftvm images fetch')"; exit 2; }

export INITRD=${INITRD:-$here/build/bench-initrd.img}
if [[ ! -f $INITRD || $INITRD -ot $images/initrd.img ]]; then
    FTVM_IMAGES=$images make -s -C "$here" initrd >&2
fi

export N=${N:-1} INT_WORK=${INT_WORK:-4000} DISK_MB=${DISK_MB:-512}
export NET_MB=${NET_MB:-32} NET_TIMEOUT=${NET_TIMEOUT:-60}
export FAILOVER_N=${FAILOVER_N:-3} KILL_AFTER=${KILL_AFTER:-3} TICK_MS=${TICK_MS:-10}
export WORKLOADS=${WORKLOADS:-cpu disk disk-br net failover}
export FT_ARGS=${FT_ARGS:-} SAMPLE_S=${SAMPLE_S:-0.5} PIN=${PIN:-0}
export CMDLINE=${CMDLINE:-console=ttyS0 quiet cryptomgr.notests=1}
export MEM=${MEM:-512M} RUN_TIMEOUT=${RUN_TIMEOUT:-600}
export RESULTS=${RESULTS:-$here/results}
export LOGS=$here/build/logs
export HOST_IP=10.78.0.1 GUEST_IP=10.78.0.2
export FTVM_VERSION=$(cd "$repo" && git describe --always --dirty 2>/dev/null || echo "")
export HOST="$(uname -srm), $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
mkdir -p "$LOGS" "$RESULTS"
PYTHON=${PYTHON:-python3}

# --- The network: a namespace with a bridge (HOST_IP) and three TAPs on it: one for
# `ftvm run`, one each for the primary and the backup (same guest MAC; the backup's
# TAP stays silent until it goes live, then it announces the MAC by RARP). The whole
# driver runs inside the namespace, so the pair's loopback channel is the namespace's.
netns=ftvmft$$
bridge=ftbr$$
taps=(ftts$$ fttp$$ fttb$$)
made_netns=0
cleanup() {
    if [[ $made_netns == 1 ]]; then
        for t in "${taps[@]}" "$bridge"; do
            ip netns exec "$netns" ip link del "$t" 2>/dev/null || true
        done
        ip netns del "$netns" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wrap=()
export NETNS="" NET_NOTE=""
if [[ " $WORKLOADS " == *" net "* ]]; then
    if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
        NET_NOTE="the network workload needs root and iproute2"
    else
        ip netns add "$netns"
        made_netns=1
        ip -n "$netns" link set lo up
        ip -n "$netns" link add "$bridge" type bridge
        ip -n "$netns" addr add "$HOST_IP/24" dev "$bridge"
        ip -n "$netns" link set "$bridge" up
        for t in "${taps[@]}"; do
            ip -n "$netns" tuntap add dev "$t" mode tap
            ip -n "$netns" link set "$t" master "$bridge"
            ip -n "$netns" link set "$t" up
        done
        export NETNS=$netns TAP_SINGLE=${taps[0]} TAP_PRIMARY=${taps[1]} TAP_BACKUP=${taps[2]}
        wrap=(ip netns exec "$netns")
    fi
fi

rc=0
"${wrap[@]}" "$PYTHON" "$here/ft_run.py" || rc=$?
exit "$rc"
