#!/usr/bin/env bash
# ftvm's machine against QEMU, side by side, on the same firmware, kernel, initrd and
# kernel command line: boot time and guest MIPS (integer and double precision).
# See bench/README.md for what each number means.
#
# Environment (all optional):
#   FTVM_IMAGES   guest images dir (fw_dynamic.bin, vmlinux, initrd.img);
#                 default ~/.cache/ftvm/images
#   FTVM          ftvm binary; default <repo>/target/release/ftvm
#   BUILD=1       build it first (cargo build --release -p ftvm)
#   QEMU          default qemu-system-riscv64
#   QEMU_CPU      default rv64 without H, Zb*, Zihintpause: the ISA ftvm has
#   N             boot runs per emulator and command line (default 3)
#   MIPS_RUNS     timed runs per program and emulator (default 3)
#   INT_WORK, FP_WORK   work sizes (default 20000 and 10000: several seconds on QEMU)
#   COMMON_ARGS   kernel arguments common to every run
#                 (default "console=ttyS0 quiet no5lvl")
#   BOOT_VARIANTS which boot command lines: "default notests" (default); notests adds
#                 cryptomgr.notests=1
#   BOOT_TIMEOUT, RUN_TIMEOUT   seconds per boot / per benchmark run (120 / 300)
#   SKIP_FTVM=1 / SKIP_QEMU=1   measure only one side
#   RESULTS       output dir (default bench/results)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
images=${FTVM_IMAGES:-$HOME/.cache/ftvm/images}
FTVM=${FTVM:-$repo/target/release/ftvm}
QEMU=${QEMU:-qemu-system-riscv64}
QEMU_CPU=${QEMU_CPU:-rv64,h=off,zba=off,zbb=off,zbc=off,zbs=off,Zihintpause=off}
N=${N:-3}
MIPS_RUNS=${MIPS_RUNS:-3}
INT_WORK=${INT_WORK:-20000}
FP_WORK=${FP_WORK:-10000}
COMMON_ARGS=${COMMON_ARGS:-console=ttyS0 quiet no5lvl}
BOOT_VARIANTS=${BOOT_VARIANTS:-default notests}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-120}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
MEM=${MEM:-512M}
RESULTS=${RESULTS:-$here/results}
PYTHON=${PYTHON:-python3}

say() { echo "machine.sh: $*" >&2; }

firmware=$images/fw_dynamic.bin
kernel=$images/vmlinux
base_initrd=$images/initrd.img
for f in "$firmware" "$kernel" "$base_initrd"; do
    if [[ ! -f $f ]]; then
        say "missing guest image $f (run 'ftvm images fetch' or set FTVM_IMAGES)"
        exit 1
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=$work/runs.jsonl
: >"$runs"
logs=$here/build/logs
mkdir -p "$logs"

# --- The sides -------------------------------------------------------------------

if [[ ${BUILD:-0} == 1 ]]; then
    (cd "$repo" && cargo build --release -p ftvm) >&2
fi

have_ftvm=0
ftvm_stats=0
ftvm_note=""
if [[ ${SKIP_FTVM:-0} == 1 ]]; then
    ftvm_note="skipped (SKIP_FTVM=1)"
elif [[ ! -x $FTVM ]]; then
    ftvm_note="unavailable: $FTVM not built (cargo build --release -p ftvm)"
elif ! "$FTVM" run --help >/dev/null 2>&1; then
    ftvm_note="unavailable: '$FTVM run --help' failed"
else
    have_ftvm=1
    if "$FTVM" run --help 2>&1 | grep -q -- '--stats'; then
        ftvm_stats=1
    else
        ftvm_note="ftvm run has no --stats: no instruction counts from ftvm"
    fi
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

# The guest programs, the initrd that carries them and QEMU's counting plugin.
make -s -C "$here" all plugin >&2
initrd=$here/build/bench-initrd.img
"$here/mkinitrd-bench.sh" "$base_initrd" "$initrd" >/dev/null
plugin=$here/build/insn_count.so
qemu_plugin_ok=0
if [[ $have_qemu == 1 && -f $plugin ]]; then
    # QEMU exits with an error at once when the plugin cannot load; killed means it loaded.
    "$QEMU" -M virt -display none -plugin "$plugin" -monitor none -serial none -S \
        -d plugin </dev/null >"$work/plugin-probe" 2>&1 &
    pid=$!
    sleep 1
    if kill "$pid" 2>/dev/null; then qemu_plugin_ok=1; else qemu_plugin_ok=0; fi
    wait "$pid" 2>/dev/null || true
    [[ $qemu_plugin_ok == 0 ]] && say "QEMU cannot load $plugin: $(head -c 300 "$work/plugin-probe")"
fi

# --- One run ---------------------------------------------------------------------

# run EMU TEST VARIANT RUN TIMEOUT CMDLINE [extra emulator arguments...]
# Appends one JSON line to $runs.
run() {
    local emu=$1 test=$2 variant=$3 n=$4 tmo=$5 cmdline=$6
    shift 6
    local cmd
    case $emu in
    ftvm)
        cmd=("$FTVM" run --firmware "$firmware" --kernel "$kernel" --initrd "$initrd"
            --cmdline "$cmdline" --memory "$MEM" --serial stdio "$@") ;;
    qemu)
        cmd=("$QEMU" -M virt -m "$MEM" -smp 1 -cpu "$QEMU_CPU" -nographic
            -bios "$firmware" -kernel "$kernel" -initrd "$initrd" -append "$cmdline" "$@") ;;
    esac
    local log=$logs/$emu-$test-$variant-$n.log
    local json
    json=$("$PYTHON" "$here/runguest.py" --timeout "$tmo" --out "$log" -- "${cmd[@]}")
    "$PYTHON" - "$emu" "$test" "$variant" "$n" "$json" "$cmdline" >>"$runs" <<'EOF'
import json, sys
emu, test, variant, n, js, cmdline = sys.argv[1:]
r = json.loads(js)
r.update(emu=emu, test=test, variant=variant, run=int(n), cmdline=cmdline)
print(json.dumps(r))
EOF
    "$PYTHON" - "$json" "$emu" "$test" "$variant" "$n" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
emu, test, variant, n = sys.argv[2:]
f = lambda v: "-" if v is None else (f"{v:.2f}s" if isinstance(v, float) else str(v))
extra = ""
if r.get("elapsed_ns") is not None:
    extra += f" elapsed={r['elapsed_ns']/1e9:.2f}s status={r['status']}"
if r.get("icount_user") is not None:
    extra += f" icount_user={r['icount_user']}"
print(f"  {emu:4} {test:14} {variant:8} #{n}: ready={f(r['ready_s'])} exit={f(r['exit_s'])}"
      f" rc={r['rc']}{' TIMEOUT' if r['timed_out'] else ''}{extra}")
EOF
}

emus=()
[[ $have_ftvm == 1 ]] && emus+=(ftvm)
[[ $have_qemu == 1 ]] && emus+=(qemu)

# --- Boot time -------------------------------------------------------------------

for variant in $BOOT_VARIANTS; do
    case $variant in
    default) cmdline="$COMMON_ARGS -- true" ;;
    notests) cmdline="$COMMON_ARGS cryptomgr.notests=1 -- true" ;;
    *) say "unknown boot variant '$variant'"; exit 1 ;;
    esac
    say "boot ($variant): $cmdline"
    for ((i = 1; i <= N; i++)); do
        # Alternate which side goes first, so neither always meets a warm cache.
        order=("${emus[@]}")
        if ((i % 2 == 0)) && ((${#emus[@]} == 2)); then order=("${emus[1]}" "${emus[0]}"); fi
        for emu in "${order[@]}"; do
            run "$emu" boot "$variant" "$i" "$BOOT_TIMEOUT" "$cmdline"
        done
    done
done

# --- Instruction counts and MIPS -------------------------------------------------

# The programs run after a boot without the crypto self-tests (shorter, identical
# on both sides); their own clock covers only their work.
prog_args="$COMMON_ARGS cryptomgr.notests=1 --"
for prog in intbench fpbench; do
    case $prog in intbench) w=$INT_WORK ;; fpbench) w=$FP_WORK ;; esac
    say "$prog $w: instruction counts"
    # icount_user(W) - icount_user(0): the program's own instructions.
    if [[ $qemu_plugin_ok == 1 ]]; then
        run qemu "count-$prog" plugin "$w" "$RUN_TIMEOUT" "$prog_args /bench/$prog $w" \
            -plugin "$plugin" -d plugin
        run qemu "count-$prog" plugin 0 "$BOOT_TIMEOUT" "$prog_args /bench/$prog 0" \
            -plugin "$plugin" -d plugin
    fi
    if [[ $have_qemu == 1 ]]; then
        # With -icount shift=0 the guest clock advances 1 ns per instruction, so the
        # elapsed_ns the program prints is the count of everything the hart ran in
        # its timed region (its own work plus kernel ticks): a cross-check.
        run qemu "count-$prog" icount0 "$w" "$RUN_TIMEOUT" "$prog_args /bench/$prog $w" \
            -icount shift=0
    fi
    if [[ $ftvm_stats == 1 ]]; then
        run ftvm "count-$prog" stats "$w" "$RUN_TIMEOUT" "$prog_args /bench/$prog $w" --stats
        run ftvm "count-$prog" stats 0 "$BOOT_TIMEOUT" "$prog_args /bench/$prog 0" --stats
    fi
    say "$prog $w: timed runs"
    for ((i = 1; i <= MIPS_RUNS; i++)); do
        for emu in "${emus[@]}"; do
            run "$emu" "mips-$prog" "$w" "$i" "$RUN_TIMEOUT" "$prog_args /bench/$prog $w"
        done
    done
done

# --- Report ----------------------------------------------------------------------

mkdir -p "$RESULTS"
stamp=$(date +%Y%m%d-%H%M%S)
out=$RESULTS/machine-$stamp.json
qemu_version=$([[ $have_qemu == 1 ]] && "$QEMU" --version | head -1 || echo "")
ftvm_version=$([[ $have_ftvm == 1 ]] && (cd "$repo" && git describe --always --dirty 2>/dev/null) || echo "")
rc=0
"$PYTHON" "$here/report.py" "$runs" "$out" \
    --set ftvm_available="$have_ftvm" --set ftvm_note="$ftvm_note" \
    --set qemu_available="$have_qemu" --set qemu_note="$qemu_note" \
    --set qemu_plugin="$qemu_plugin_ok" --set qemu_cpu="$QEMU_CPU" \
    --set qemu_version="$qemu_version" --set ftvm_version="$ftvm_version" \
    --set common_args="$COMMON_ARGS" --set memory="$MEM" --set n_boot="$N" \
    --set mips_runs="$MIPS_RUNS" --set int_work="$INT_WORK" --set fp_work="$FP_WORK" \
    --set host="$(uname -srm), $(nproc) cpus" || rc=$?
say "wrote $out"
exit "$rc"
