#!/usr/bin/env bash
# ftvm's virtio I/O against QEMU, side by side, on the same firmware, kernel, initrd
# and kernel command line: disk sequential write/read (file and NBD backends) and TCP
# throughput host->guest and guest->host over a TAP in a network namespace.
# See bench/README.md ("I/O") for what each number means. Needs root for the network
# part (ip netns, ip tuntap); without root it is skipped.
#
# Environment (all optional):
#   FTVM_IMAGES   guest images dir (fw_dynamic.bin, vmlinux, initrd.img);
#                 default ~/.cache/ftvm/images
#   FTVM          ftvm binary; default <repo>/target/release/ftvm
#   BUILD=1       build it first (cargo build --release -p ftvm)
#   QEMU, QEMU_NBD   default qemu-system-riscv64, qemu-nbd
#   QEMU_CPU      default rv64 without H, Zb*, Zihintpause: the ISA ftvm has
#   TESTS         which runs: "file nbd net" (default)
#   DISK_MB       MiB written then read by dd (default 128) on a 256 MiB raw image
#   NET_MB        MiB per TCP direction (default 64); NET_TIMEOUT seconds bound (60)
#   COMMON_ARGS   kernel arguments of every run
#                 (default "console=ttyS0 quiet no5lvl cryptomgr.notests=1")
#   RUN_TIMEOUT   seconds per guest run before it is killed (default 900)
#   SKIP_FTVM=1 / SKIP_QEMU=1   measure only one side
#   RESULTS       output dir (default bench/results)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
images=${FTVM_IMAGES:-$HOME/.cache/ftvm/images}
FTVM=${FTVM:-$repo/target/release/ftvm}
QEMU=${QEMU:-qemu-system-riscv64}
QEMU_NBD=${QEMU_NBD:-qemu-nbd}
QEMU_CPU=${QEMU_CPU:-rv64,h=off,zba=off,zbb=off,zbc=off,zbs=off,Zihintpause=off}
TESTS=${TESTS:-file nbd net}
DISK_MB=${DISK_MB:-128}
NET_MB=${NET_MB:-64}
NET_TIMEOUT=${NET_TIMEOUT:-60}
COMMON_ARGS=${COMMON_ARGS:-console=ttyS0 quiet no5lvl cryptomgr.notests=1}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
MEM=${MEM:-512M}
RESULTS=${RESULTS:-$here/results}
PYTHON=${PYTHON:-python3}

say() { echo "io.sh: $*" >&2; }

firmware=$images/fw_dynamic.bin
kernel=$images/vmlinux
initrd=$images/initrd.img
for f in "$firmware" "$kernel" "$initrd"; do
    if [[ ! -f $f ]]; then
        say "missing guest image $f (run 'ftvm images fetch' or set FTVM_IMAGES)"
        exit 1
    fi
done

# --- What this run creates, and its cleanup (by the names and PIDs made here) -------

work=$(mktemp -d)
netns=ftvmio$$
tap=ftvmtap$$
bridge=ftvmbr$$
nbd_pid=""
cleanup() {
    if [[ -n $nbd_pid ]]; then kill "$nbd_pid" 2>/dev/null || true; fi
    if ip netns list 2>/dev/null | grep -qw "$netns"; then
        ip netns exec "$netns" ip link del "$tap" 2>/dev/null || true
        ip netns exec "$netns" ip link del "$bridge" 2>/dev/null || true
        ip netns del "$netns" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
runs=$work/runs.jsonl
: >"$runs"
logs=$here/build/logs
mkdir -p "$logs"

# --- The sides -------------------------------------------------------------------

if [[ ${BUILD:-0} == 1 ]]; then
    (cd "$repo" && cargo build --release -p ftvm) >&2
fi

have_ftvm=0
ftvm_note=""
if [[ ${SKIP_FTVM:-0} == 1 ]]; then
    ftvm_note="skipped (SKIP_FTVM=1)"
elif [[ ! -x $FTVM ]]; then
    ftvm_note="unavailable: $FTVM not built (cargo build --release -p ftvm, or BUILD=1)"
elif ! "$FTVM" run --help 2>/dev/null | grep -q -- '--disk'; then
    ftvm_note="unavailable: '$FTVM run --help' has no --disk"
else
    have_ftvm=1
fi
[[ -n $ftvm_note ]] && say "ftvm $ftvm_note"

have_qemu=0
qemu_note=""
if [[ ${SKIP_QEMU:-0} == 1 ]]; then
    qemu_note="skipped (SKIP_QEMU=1)"
elif ! command -v "$QEMU" >/dev/null; then
    qemu_note="unavailable: $QEMU not found (apt-get install qemu-system-misc)"
else
    have_qemu=1
fi
[[ -n $qemu_note ]] && say "qemu $qemu_note"
if [[ $have_ftvm == 0 && $have_qemu == 0 ]]; then
    say "neither emulator is available"
    exit 1
fi
# QEMU first: its runs are short and show at once whether the guest side works.
emus=()
[[ $have_qemu == 1 ]] && emus+=(qemu)
[[ $have_ftvm == 1 ]] && emus+=(ftvm)

tests=()
for t in $TESTS; do
    case $t in
    file) tests+=(file) ;;
    nbd)
        if command -v "$QEMU_NBD" >/dev/null; then tests+=(nbd); else
            say "no $QEMU_NBD (apt-get install qemu-utils): NBD skipped"
        fi ;;
    net)
        if [[ $(id -u) == 0 ]] && command -v ip >/dev/null; then tests+=(net); else
            say "network test needs root and iproute2: skipped"
        fi ;;
    *) say "unknown test '$t'"; exit 1 ;;
    esac
done

# --- Guest scripts ---------------------------------------------------------------
# The kernel hands the words after ' -- ' to init as arguments, at most 32 of them (more
# panic the kernel before its console is up: a silent hang), so the scripts travel in
# the initrd: the fetched initrd.img with a newc cpio appended that holds
# /bench/io-disk.sh and /bench/io-net.sh (Linux unpacks concatenated archives in
# order), and the command line only says `sh /bench/io-disk.sh`.

command -v cpio >/dev/null || { say "cpio is not installed (apt-get install cpio)"; exit 1; }
stage=$work/stage
mkdir -p "$stage/bench"
# /proc/uptime has 10 ms resolution; busybox's date has no %N.
cat >"$stage/bench/io-disk.sh" <<EOF
up() { cut -d' ' -f1 /proc/uptime; }
echo IOMARK write-begin \$(up)
dd if=/dev/zero of=/dev/vda bs=1M count=$DISK_MB oflag=direct conv=fsync 2>/dev/null
echo IOMARK write-end \$(up) \$?
echo 3 >/proc/sys/vm/drop_caches
echo IOMARK read-begin \$(up)
dd if=/dev/vda of=/dev/null bs=1M count=$DISK_MB iflag=direct 2>/dev/null
echo IOMARK read-end \$(up) \$?
EOF
cat >"$stage/bench/io-net.sh" <<EOF
up() { cut -d' ' -f1 /proc/uptime; }
ip addr add 10.77.0.2/24 dev eth0 && ip link set eth0 up
sleep 1
echo IOMARK rx-listen \$(up)
nc -l -p 5001 >/dev/null
echo IOMARK rx-done \$(up)
dd if=/dev/zero bs=65536 count=$((NET_MB * 16)) 2>/dev/null | nc 10.77.0.1 5002
echo IOMARK tx-done \$(up)
EOF
io_initrd=$work/io-initrd.img
cp "$initrd" "$io_initrd"
pad=$(((4 - $(stat -c %s "$io_initrd") % 4) % 4))
if ((pad)); then head -c "$pad" /dev/zero >>"$io_initrd"; fi
(cd "$stage" && find bench | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >>"$io_initrd"

# --- One run ---------------------------------------------------------------------

# run EMU TEST; appends one JSON line to $runs.
run() {
    local emu=$1 test=$2
    local img=$work/disk.img
    local port=$((20000 + $$ % 20000))
    local export=ftvmio
    local script kind extra_ftvm=() extra_qemu=() wrap=() runner_args=()
    rm -f "$img"
    case $test in
    file | nbd)
        truncate -s 256M "$img"
        script="sh /bench/io-disk.sh"
        kind=disk
        runner_args=(--disk-bytes $((DISK_MB << 20)))
        ;;
    net)
        script="sh /bench/io-net.sh"
        kind=net
        runner_args=(--bytes $((NET_MB << 20)) --net-timeout "$NET_TIMEOUT")
        wrap=(ip netns exec "$netns")
        ;;
    esac
    case $test in
    file)
        extra_ftvm=(--disk "path=$img")
        extra_qemu=(-drive "file=$img,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0)
        ;;
    nbd)
        "$QEMU_NBD" -f raw -x "$export" -b 127.0.0.1 -p "$port" --persistent \
            --fork --pid-file="$work/nbd.pid" "$img"
        nbd_pid=$(cat "$work/nbd.pid")
        extra_ftvm=(--disk "nbd=nbd://127.0.0.1:$port/$export")
        extra_qemu=(-drive "file=nbd://127.0.0.1:$port/$export,format=raw,if=none,id=d0"
            -device virtio-blk-device,drive=d0)
        ;;
    net)
        extra_ftvm=(--net "tap=$tap")
        extra_qemu=(-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no"
            -device virtio-net-device,netdev=n0)
        ;;
    esac
    local cmdline="$COMMON_ARGS -- $script"
    local cmd
    case $emu in
    ftvm)
        cmd=("$FTVM" run --firmware "$firmware" --kernel "$kernel" --initrd "$io_initrd"
            --cmdline "$cmdline" --memory "$MEM" --serial stdio --rng "${extra_ftvm[@]}") ;;
    qemu)
        cmd=("$QEMU" -M virt -m "$MEM" -smp 1 -cpu "$QEMU_CPU" -nographic
            -bios "$firmware" -kernel "$kernel" -initrd "$io_initrd" -append "$cmdline"
            -device virtio-rng-device "${extra_qemu[@]}") ;;
    esac
    local log=$logs/io-$emu-$test.log
    say "$emu $test ..."
    local json rc=0
    json=$("${wrap[@]}" "$PYTHON" "$here/io_run.py" --kind "$kind" --timeout "$RUN_TIMEOUT" \
        --out "$log" "${runner_args[@]}" -- "${cmd[@]}") || rc=$?
    if [[ $test == nbd && -n $nbd_pid ]]; then
        kill "$nbd_pid" 2>/dev/null || true
        nbd_pid=""
    fi
    rm -f "$img"
    if [[ -z $json ]]; then
        json='{"ready_s": null, "exit_s": null, "rc": '$rc', "timed_out": false, "results": {}, "errors": ["io_run.py failed"], "marks": {}}'
    fi
    "$PYTHON" - "$emu" "$test" "$json" >>"$runs" <<'EOF'
import json, sys
emu, test, js = sys.argv[1:]
r = json.loads(js)
r.update(emu=emu, test=test)
print(json.dumps(r))
EOF
    "$PYTHON" - "$json" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
parts = [f"{k}={v['mb_s']:.1f}MB/s ({v['bytes']}B/{v['seconds']:.2f}s)" if v["mb_s"] else f"{k}=- ({v.get('note')})"
         for k, v in r["results"].items()]
f = lambda v: "-" if v is None else f"{v:.1f}s"
print(f"    ready={f(r['ready_s'])} exit={f(r['exit_s'])} rc={r['rc']}"
      f"{' TIMEOUT' if r['timed_out'] else ''} " + " ".join(parts)
      + ("" if not r["errors"] else " errors: " + "; ".join(r["errors"])))
EOF
}

# The network: a namespace with a bridge (10.77.0.1/24) and the emulator's TAP on it;
# the emulator and the host's end of the transfers run inside it.
setup_net() {
    ip netns add "$netns"
    ip netns exec "$netns" ip link set lo up
    ip netns exec "$netns" ip link add "$bridge" type bridge
    ip netns exec "$netns" ip tuntap add dev "$tap" mode tap
    ip netns exec "$netns" ip link set "$tap" master "$bridge"
    ip netns exec "$netns" ip addr add 10.77.0.1/24 dev "$bridge"
    ip netns exec "$netns" ip link set "$bridge" up
    ip netns exec "$netns" ip link set "$tap" up
}

for test in "${tests[@]}"; do
    [[ $test == net ]] && setup_net
    for emu in "${emus[@]}"; do
        run "$emu" "$test"
    done
done

# --- Report ----------------------------------------------------------------------

mkdir -p "$RESULTS"
stamp=$(date +%Y%m%d-%H%M%S)
out=$RESULTS/io-$stamp.json
qemu_version=$([[ $have_qemu == 1 ]] && "$QEMU" --version | head -1 || echo "")
ftvm_version=$([[ $have_ftvm == 1 ]] && (cd "$repo" && git describe --always --dirty 2>/dev/null) || echo "")
rc=0
"$PYTHON" "$here/io_report.py" "$runs" "$out" \
    --set ftvm_available="$have_ftvm" --set ftvm_note="$ftvm_note" \
    --set qemu_available="$have_qemu" --set qemu_note="$qemu_note" \
    --set qemu_cpu="$QEMU_CPU" --set qemu_version="$qemu_version" \
    --set ftvm_version="$ftvm_version" --set common_args="$COMMON_ARGS" \
    --set memory="$MEM" --set disk_mb="$DISK_MB" --set net_mb="$NET_MB" \
    --set net_timeout="$NET_TIMEOUT" --set tests="${tests[*]}" \
    --set host="$(uname -srm), $(nproc) cpus" || rc=$?
say "wrote $out"
exit "$rc"
