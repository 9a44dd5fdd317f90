/* QEMU TCG plugin: exact count of executed guest instructions, snapshotted at markers.
 *
 * A marker is the Thumb-2 hint `dbg #n` (encoding F3AF 80Fn), a no-op on ARMv7-M/ARMv8-M (or,
 * for ARMv6-M cores QEMU emulates as such, the 16-bit reserved hint BF(8+n)0: markers.c); the
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
 * With the argument `blocks=on` (-plugin icount.so,blocks=on) the plugin also logs which code
 * ran, for mcugen/cycles.py's cycle estimate. Each translated block, split at its markers into
 * runs of non-marker instructions ("pieces"), is logged once when QEMU translates it:
 *   "block <id> <address, hex> <instructions> <the instructions' bytes, hex, in memory order>"
 * and before each "marker" line (and before "total") the pieces that ran since the previous
 * marker, with how many times, as lines of "exec <id>:<times> <id>:<times> ...". The sum of
 * times * instructions over one interval is that interval's exact instruction count. A piece
 * counts with one more inline add per execution (on its first instruction when its block holds
 * a marker, so that the instructions after a marker fall in the next interval); without the
 * argument none of this is instrumented and the plugin costs what it did.
 *
 * QEMU 7.2 exports plugin API version 1. Debian ships no qemu-plugin.h, so the few types and
 * functions used are declared here, following that API. Single vCPU only (the M-profile
 * boards have one). */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
                                                enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

PLUGIN_EXPORT int qemu_plugin_version = 1;
/* ---- end of the API subset ---- */

/* Non-marker instructions executed so far, including all of the current block's. */
static uint64_t executed;

static int marker_number(const struct qemu_plugin_insn *insn);
static size_t thumb_size(const struct qemu_plugin_insn *insn);

/* ---- blocks=on: which code ran between markers ---- */
static int log_blocks;

/* A piece: a run of non-marker instructions of one translated block. Pieces are allocated one
 * by one and never move, since QEMU's inline add keeps a pointer to `times`. */
struct piece {
    uint64_t times;  /* executions so far (QEMU's inline add) */
    uint64_t logged; /* executions already logged */
};

static struct piece **pieces;
static size_t piece_count;
static size_t piece_capacity;

static struct piece *new_piece(void)
{
    if (piece_count == piece_capacity) {
        piece_capacity = piece_capacity ? 2 * piece_capacity : 1024;
        pieces = realloc(pieces, piece_capacity * sizeof *pieces);
    }
    struct piece *piece = calloc(1, sizeof *piece);
    if (pieces == NULL || piece == NULL) {
        qemu_plugin_outs("icount: out of memory\n");
        abort();
    }
    pieces[piece_count++] = piece;
    return piece;
}

/* Logs "block <id> <address> <instructions> <bytes>" for instructions [begin, end) of tb. */
static void log_piece(const struct qemu_plugin_tb *tb, size_t id, size_t begin, size_t end)
{
    size_t bytes = 0;
    for (size_t index = begin; index < end; index++) {
        bytes += thumb_size(qemu_plugin_tb_get_insn(tb, index));
    }
    const size_t capacity = 80 + 2 * bytes;
    char *line = malloc(capacity);
    if (line == NULL) {
        qemu_plugin_outs("icount: out of memory\n");
        abort();
    }
    size_t length = (size_t)snprintf(
        line, capacity, "block %zu %" PRIx64 " %zu ", id,
        qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, begin)), end - begin);
    for (size_t index = begin; index < end; index++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, index);
        const uint8_t *data = qemu_plugin_insn_data(insn);
        for (size_t byte = 0; byte < thumb_size(insn); byte++) {
            length += (size_t)snprintf(line + length, capacity - length, "%02x", data[byte]);
        }
    }
    snprintf(line + length, capacity - length, "\n");
    qemu_plugin_outs(line);
    free(line);
}

/* Splits tb at its markers into pieces, logs each and counts its executions: with one add per
 * block when there is no marker in it, else with one add on the piece's first instruction. */
static void instrument_pieces(struct qemu_plugin_tb *tb, size_t count, size_t markers)
{
    size_t begin = 0;
    while (begin < count) {
        if (marker_number(qemu_plugin_tb_get_insn(tb, begin)) >= 0) {
            begin++;
            continue;
        }
        size_t end = begin + 1;
        while (end < count && marker_number(qemu_plugin_tb_get_insn(tb, end)) < 0) {
            end++;
        }
        log_piece(tb, piece_count, begin, end);
        struct piece *piece = new_piece();
        if (markers == 0) {
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                     &piece->times, 1);
        } else {
            qemu_plugin_register_vcpu_insn_exec_inline(qemu_plugin_tb_get_insn(tb, begin),
                                                       QEMU_PLUGIN_INLINE_ADD_U64,
                                                       &piece->times, 1);
        }
        begin = end;
    }
}

/* Logs the pieces that ran since the last call, as "exec <id>:<times> ..." lines. */
static void log_executed_pieces(void)
{
    char line[1024];
    size_t length = 0;
    for (size_t id = 0; id < piece_count; id++) {
        struct piece *piece = pieces[id];
        if (piece->times == piece->logged) {
            continue;
        }
        if (length == 0) {
            length = (size_t)snprintf(line, sizeof line, "exec");
        }
        length += (size_t)snprintf(line + length, sizeof line - length, " %zu:%" PRIu64, id,
                                   piece->times - piece->logged);
        piece->logged = piece->times;
        if (length > sizeof line - 64) {
            snprintf(line + length, sizeof line - length, "\n");
            qemu_plugin_outs(line);
            length = 0;
        }
    }
    if (length > 0) {
        snprintf(line + length, sizeof line - length, "\n");
        qemu_plugin_outs(line);
    }
}
/* ---- end of blocks=on ---- */

/* The instruction's size, from its first halfword: a Thumb instruction is 32 bits when that
 * halfword starts with 0b11101, 0b11110 or 0b11111. qemu_plugin_insn_size cannot be trusted
 * for the last instruction of a block that ends at a page boundary: QEMU 7.2's Arm translator
 * then reads the next halfword (to see whether the next instruction crosses the page) and
 * that read is appended to the instruction's bytes (seen: 2-byte `mov` logged as 4 bytes). */
static size_t thumb_size(const struct qemu_plugin_insn *insn)
{
    const size_t recorded = qemu_plugin_insn_size(insn);
    if (recorded < 2) {
        return recorded;
    }
    const uint8_t *bytes = qemu_plugin_insn_data(insn);
    const size_t size = (bytes[1] >> 3) >= 0x1Du ? 4 : 2;
    return size < recorded ? size : recorded;
}

/* Returns the marker number n if the instruction is `dbg #n` or hint BF(8+n)0, else -1. */
static int marker_number(const struct qemu_plugin_insn *insn)
{
    const uint8_t *bytes = qemu_plugin_insn_data(insn);
    const unsigned first = (unsigned)bytes[0] | (unsigned)bytes[1] << 8;
    if (thumb_size(insn) == 2) {
        /* The 16-bit form (markers.c, MCUGEN_HINT_MARKERS): reserved hint BF(8+n)0. */
        const unsigned hint = (first >> 4) & 0xFu;
        return (first & 0xFF0Fu) == 0xBF00u && hint >= 9 && hint <= 11 ? (int)(hint - 8) : -1;
    }
    if (thumb_size(insn) != 4) {
        return -1;
    }
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
    if (log_blocks) {
        log_executed_pieces();
    }
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
    if (log_blocks) {
        instrument_pieces(tb, count, markers);
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
    if (log_blocks) {
        log_executed_pieces();
    }
    char line[64];
    snprintf(line, sizeof line, "total %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                      char **argv)
{
    if (info->version.min > qemu_plugin_version) {
        return -1;
    }
    for (int index = 0; index < argc; index++) {
        if (strcmp(argv[index], "blocks=on") == 0) {
            log_blocks = 1;
        } else if (strcmp(argv[index], "blocks=off") != 0) {
            fprintf(stderr, "icount: unknown argument %s (the one argument: blocks=on)\n",
                    argv[index]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
