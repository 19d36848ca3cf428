/*
 * insn_count: a QEMU TCG plugin that counts guest instructions executed, split by
 * the virtual address of the code: "user" (below 0x8000_0000, or at or above
 * 4 GiB with bit 63 clear: RISC-V user space, including the vDSO) and "other"
 * (kernel addresses with bit 63 set, and 0x8000_0000..4 GiB: OpenSBI in M-mode
 * and the kernel before it enables the MMU, both running from physical RAM).
 *
 * At exit it prints to stderr (QEMU's log, or the file given by -D):
 *   icount_user=N
 *   icount_total=N
 * the same lines `ftvm run --stats` prints, so bench/machine.sh reads both alike.
 *
 * Counts are per translation block, added inline when a block starts; a block cut
 * short by an exception is counted whole. The error is small and cancels when two
 * runs of the same boot are subtracted.
 *
 * Debian ships QEMU with plugin support but without qemu-plugin.h, so the few
 * declarations needed are written out here; they follow the documented plugin
 * API (version 1, QEMU 6.0 to 7.2) and are checked by QEMU at load time through
 * qemu_plugin_version.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };

typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1;

/* One vCPU (-smp 1): plain inline adds need no atomics. */
static uint64_t count_user;
static uint64_t count_other;

static int is_user_address(uint64_t vaddr)
{
    if (vaddr >> 63)
        return 0;
    return vaddr < 0x80000000ull || vaddr >= 0x100000000ull;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    uint64_t *counter = is_user_address(qemu_plugin_tb_vaddr(tb)) ? &count_user : &count_other;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, counter,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    char line[128];
    snprintf(line, sizeof line, "icount_user=%" PRIu64 "\nicount_total=%" PRIu64 "\n",
             count_user, count_user + count_other);
    qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                               char **argv)
{
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
