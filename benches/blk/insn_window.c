/*
 * insn_window.c: a QEMU TCG plugin for `ringos probe blk --component
 * --count`. It counts the guest instructions and translation blocks the
 * vCPU executes between two marks of the same kind, the marks being
 * register self-exchanges the ringos kernel executes with `count-marks=1`
 * (kernel/src/count_marks.rs):
 *
 *   xchg rcx, rcx   (48 87 c9)  before and after each timed kernel-only read
 *   xchg rbx, rbx   (48 87 db)  at each clock read of a component: the probe
 *                               component reads the clock before and after
 *                               each of its reads
 *
 * A mark of a kind opens a window of that kind if none is open, else closes
 * it. At exit it writes, to the file given as `outfile=PATH`:
 *
 *   insn-window kind=kernel windows=N insns=N tbs=N
 *   insn-window kind=component windows=N insns=N tbs=N
 *
 * Built on demand by the CLI (`cc`, nothing else). The plugin API is
 * QEMU's version 1 (QEMU 7.2, Debian 12's); the declarations it uses are
 * written out below so no QEMU source is needed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags {
    QEMU_PLUGIN_CB_NO_REGS,
    QEMU_PLUGIN_CB_R_REGS,
    QEMU_PLUGIN_CB_RW_REGS,
};

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

extern void qemu_plugin_register_vcpu_tb_trans_cb(
    qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb,
                                                        size_t idx);
extern const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
extern size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
                                                 void (*cb)(unsigned int, void *),
                                                 enum qemu_plugin_cb_flags flags,
                                                 void *userdata);
extern void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                                   void (*cb)(unsigned int, void *),
                                                   enum qemu_plugin_cb_flags flags,
                                                   void *userdata);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
                                           void (*cb)(qemu_plugin_id_t, void *),
                                           void *userdata);
extern void qemu_plugin_outs(const char *string);

enum { KERNEL, COMPONENT, KINDS };
static const char *const kind_name[KINDS] = {"kernel", "component"};

struct window {
    int open;
    uint64_t windows, insns, tbs;
};
static struct window win[KINDS];
static char *outfile;

/* One per translated block: its instruction count. The vCPU is one, so
 * plain counters do. */
static void tb_exec(unsigned int vcpu, void *userdata)
{
    (void)vcpu;
    uint64_t n = (uintptr_t)userdata;
    for (int k = 0; k < KINDS; k++) {
        if (win[k].open) {
            win[k].insns += n;
            win[k].tbs++;
        }
    }
}

static void mark(unsigned int vcpu, void *userdata)
{
    (void)vcpu;
    struct window *w = &win[(uintptr_t)userdata];
    w->open = !w->open;
    if (w->open) {
        w->windows++;
    }
}

static void translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const unsigned char *b = qemu_plugin_insn_data(insn);
        if (qemu_plugin_insn_size(insn) != 3 || b[0] != 0x48 || b[1] != 0x87) {
            continue;
        }
        if (b[2] == 0xc9) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)KERNEL);
        } else if (b[2] == 0xdb) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)COMPONENT);
        }
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *f = outfile ? fopen(outfile, "w") : NULL;
    if (!f) {
        qemu_plugin_outs("insn_window: cannot write the outfile\n");
        return;
    }
    for (int k = 0; k < KINDS; k++) {
        fprintf(f, "insn-window kind=%s windows=%llu insns=%llu tbs=%llu\n", kind_name[k],
                (unsigned long long)win[k].windows, (unsigned long long)win[k].insns,
                (unsigned long long)win[k].tbs);
    }
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "outfile=", 8) == 0) {
            outfile = strdup(argv[i] + 8);
        }
    }
    if (!outfile) {
        qemu_plugin_outs("insn_window: needs outfile=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
