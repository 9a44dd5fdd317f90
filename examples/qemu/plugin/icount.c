/* QEMU TCG plugin: exact count of executed guest instructions, snapshotted at markers.
 *
 * A marker is the Thumb-2 hint `dbg #n` (encoding F3AF 80Fn), a no-op on ARMv7-M/ARMv8-M; the
 * firmware writes its bytes with `.inst.w 0xf3af80fn`, which also assembles for ARMv6-M.
 * Each time one executes, the plugin logs a line "marker <n> <count>", where <count> is the
 * number of non-marker instructions executed since reset; at exit it logs "total <count>".
 * Markers are not counted, so the difference between two snapshots is exactly the work of
 * the code between them. Run with: -plugin icount.so -d plugin -D <logfile>.
 *
 * Counting is one inline 64-bit add per translation block (cheap). A block adds all its
 * instructions when it starts, so a marker in the middle of a block would also see the
 * instructions after it; each marker's callback subtracts that known number.
 * Exact as long as blocks run to their end: QEMU only takes interrupts between blocks, and a
 * block stops early only on a guest fault, after which the counts no longer matter.
 *
 * QEMU 7.2 exports plugin API version 1. Debian ships no qemu-plugin.h, so the few types and
 * functions used are declared here, following that API. Single vCPU only (the M-profile
 * boards have one). */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PLUGIN_EXPORT __attribute__((visibility("default")))

/* ---- QEMU plugin API, version 1 (the subset used) ---- */
typedef uint64_t qemu_plugin_id_t;

typedef struct {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    /* Further fields follow in QEMU's definition; they are not read here. */
} qemu_info_t;

struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

PLUGIN_EXPORT int qemu_plugin_version = 1;
/* ---- end of the API subset ---- */

/* Non-marker instructions executed so far, including all of the current block's. */
static uint64_t executed;

/* Returns the marker number n if the instruction is `dbg #n`, else -1. */
static int marker_number(const struct qemu_plugin_insn *insn)
{
    if (qemu_plugin_insn_size(insn) != 4) {
        return -1;
    }
    const uint8_t *bytes = qemu_plugin_insn_data(insn);
    const unsigned first = (unsigned)bytes[0] | (unsigned)bytes[1] << 8;
    const unsigned second = (unsigned)bytes[2] | (unsigned)bytes[3] << 8;
    if (first != 0xF3AFu || (second & 0xFFF0u) != 0x80F0u) {
        return -1;
    }
    return (int)(second & 0xFu);
}

/* A marker's callback data packs its number (low 4 bits) with the count of the block's
 * instructions that come after it and were already added (the rest). */
static void *pack_marker(int number, size_t counted_after)
{
    return (void *)(uintptr_t)((counted_after << 4) | (unsigned)number);
}

static void on_marker(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    const uintptr_t packed = (uintptr_t)userdata;
    char line[64];
    snprintf(line, sizeof line, "marker %u %" PRIu64 "\n", (unsigned)(packed & 0xFu),
             executed - (uint64_t)(packed >> 4));
    qemu_plugin_outs(line);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    const size_t count = qemu_plugin_tb_n_insns(tb);
    size_t markers = 0;
    for (size_t index = 0; index < count; index++) {
        markers += marker_number(qemu_plugin_tb_get_insn(tb, index)) >= 0;
    }
    const size_t counted = count - markers;
    if (counted > 0) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                                 counted);
    }
    size_t markers_seen = 0;
    for (size_t index = 0; index < count; index++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, index);
        const int number = marker_number(insn);
        if (number < 0) {
            continue;
        }
        const size_t counted_before = index - markers_seen;
        markers_seen++;
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                               pack_marker(number, counted - counted_before));
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    char line[64];
    snprintf(line, sizeof line, "total %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                      char **argv)
{
    (void)argv;
    if (argc != 0 || info->version.min > qemu_plugin_version) {
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
