#!/usr/bin/env bash
# ftvm's record/replay: record overhead, replay speed and log bandwidth, in one run.
# See bench/README.md ("Record/replay") for what each number means. The network
# workload needs root (ip netns, ip tuntap); without root it is skipped.
#
# Environment (all optional):
#   FTVM          ftvm binary; default <repo>/target/release/ftvm
#   BUILD=1       build it first (cargo build --release -p ftvm)
#   N             alternating plain/recorded runs of the CPU workload (default 3)
#   LOOP          iterations of the guest's shell busy loop (default 300000)
#   IDLE_S        seconds of `sleep` in the idle workload (default 20)
#   SLEEP_S       seconds of `sleep` in the replay-speed workload (default 5)
#   DISK_MB       MiB written to and read back from a virtio disk (default 64)
#   NET_MB        MiB each way over a TAP in a network namespace (default 16)
#   WORKLOADS     default "cpu sleep idle disk net"
#   CMDLINE       kernel command line (default "console=ttyS0 quiet")
#   RUN_TIMEOUT   seconds per run before it is killed (default 900)
#   RESULTS       output dir (default bench/results)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
FTVM=${FTVM:-$repo/target/release/ftvm}
if [[ "${BUILD:-0}" == 1 ]]; then
    (cd "$repo" && cargo build --release -p ftvm)
fi
[[ -x "$FTVM" ]] || { echo "replay.sh: no ftvm binary at $FTVM (BUILD=1 builds it)" >&2; exit 2; }

export FTVM
export N=${N:-3} LOOP=${LOOP:-300000} IDLE_S=${IDLE_S:-20} SLEEP_S=${SLEEP_S:-5}
export DISK_MB=${DISK_MB:-64} NET_MB=${NET_MB:-16}
export WORKLOADS=${WORKLOADS:-cpu sleep idle disk net}
export CMDLINE=${CMDLINE:-console=ttyS0 quiet}
export RUN_TIMEOUT=${RUN_TIMEOUT:-900}
export RESULTS=${RESULTS:-$here/results}
mkdir -p "$RESULTS"
exec "${PYTHON:-python3}" "$here/replay_run.py"
