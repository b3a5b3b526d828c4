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
 *   xchg rdx, rdx   (48 87 d2)  once a block request is on the ring and the
 *                               device notified
 *   xchg rsi, rsi   (48 87 f6)  in the device interrupt's handler (the CPU
 *                               woke from `hlt` for the completion)
 *
 * A mark of a kind opens a window of that kind if none is open, else closes
 * it. Inside a window, the instructions up to the first notify are the
 * part before the submission, those after the last interrupt (a
 * wake) the part after the completion; the rest overlaps the device's work. What the reader
 * waits for is the first and the last part. At exit it writes, to the file
 * given as `outfile=PATH`:
 *
 *   insn-window kind=kernel windows=N insns=N tbs=N before_submit=N after_wake=N
 *   insn-window kind=component windows=N insns=N tbs=N before_submit=N after_wake=N
 *
 * With `profile=PATH` it also writes, for every translated block that ran
 * inside a window, `tb VADDR INSNS BEFORE DURING AFTER KERNEL`: its runs
 * inside component windows before the submission, overlapping the device
 * and after the wake, and its runs inside kernel-only windows (a block
 * translated twice is listed twice): where a component-level read's
 * instructions go, beside a kernel-only read's, for
 * `RINGOS_INSN_PROFILE=PATH ringos probe blk --component --count`.
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
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
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
    int open, submitted;
    uint64_t windows, insns, tbs;
    /* Totals of the parts before the first notify and after the last wake. */
    uint64_t before_submit, after_wake;
    /* This window's instructions since its last wake (or since its notify). */
    uint64_t since_wake;
};
static struct window win[KINDS];
static char *outfile, *profile;

/* One per translated block. */
struct block {
    struct block *next;
    uint64_t vaddr, insns;
    /* Runs inside component windows: before the submission, overlapping
     * the device, after the wake; and since the last wake (not yet known
     * to be which). */
    uint64_t before, during, after, pending;
    /* Runs inside kernel-only windows. */
    uint64_t kernel;
};
static struct block *blocks;
/* The blocks with `pending` runs. */
static struct block **touched;
static size_t n_touched, cap_touched;

/* Settles the pending runs: they overlapped the device, or (`last`) they
 * came after the wake the read completed with. */
static void settle(int last)
{
    for (size_t i = 0; i < n_touched; i++) {
        struct block *b = touched[i];
        if (last) {
            b->after += b->pending;
        } else {
            b->during += b->pending;
        }
        b->pending = 0;
    }
    n_touched = 0;
}

static void count_block(struct block *b, int submitted)
{
    if (!submitted) {
        b->before++;
        return;
    }
    if (b->pending++ == 0) {
        if (n_touched == cap_touched) {
            cap_touched = cap_touched ? 2 * cap_touched : 256;
            touched = realloc(touched, cap_touched * sizeof *touched);
            if (!touched) {
                abort();
            }
        }
        touched[n_touched++] = b;
    }
}

/* The vCPU is one, so plain counters do. */
static void tb_exec(unsigned int vcpu, void *userdata)
{
    (void)vcpu;
    struct block *b = userdata;
    for (int k = 0; k < KINDS; k++) {
        struct window *w = &win[k];
        if (w->open) {
            w->insns += b->insns;
            w->tbs++;
            if (w->submitted) {
                w->since_wake += b->insns;
            } else {
                w->before_submit += b->insns;
            }
        }
    }
    if (profile && win[COMPONENT].open) {
        count_block(b, win[COMPONENT].submitted);
    }
    if (profile && win[KERNEL].open) {
        b->kernel++;
    }
}

static void mark(unsigned int vcpu, void *userdata)
{
    (void)vcpu;
    struct window *w = &win[(uintptr_t)userdata];
    w->open = !w->open;
    if (w->open) {
        w->windows++;
        w->submitted = 0;
    } else {
        w->after_wake += w->since_wake;
    }
    w->since_wake = 0;
    if (w == &win[COMPONENT]) {
        settle(1);
    }
}

enum event { NOTIFY, WAKE };

static void device_event(unsigned int vcpu, void *userdata)
{
    (void)vcpu;
    for (int k = 0; k < KINDS; k++) {
        struct window *w = &win[k];
        if (!w->open) {
            continue;
        }
        if ((uintptr_t)userdata == NOTIFY && !w->submitted) {
            w->submitted = 1;
            w->since_wake = 0;
        } else if ((uintptr_t)userdata == WAKE && w->submitted) {
            w->since_wake = 0;
            if (w == &win[COMPONENT]) {
                settle(0);
            }
        }
    }
}

static void translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct block *blk = calloc(1, sizeof *blk);
    if (!blk) {
        abort();
    }
    blk->vaddr = qemu_plugin_tb_vaddr(tb);
    blk->insns = n;
    blk->next = blocks;
    blocks = blk;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, blk);
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
        } else if (b[2] == 0xd2) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, device_event, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)NOTIFY);
        } else if (b[2] == 0xf6) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, device_event, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)WAKE);
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
        fprintf(f,
                "insn-window kind=%s windows=%llu insns=%llu tbs=%llu before_submit=%llu "
                "after_wake=%llu\n",
                kind_name[k], (unsigned long long)win[k].windows,
                (unsigned long long)win[k].insns, (unsigned long long)win[k].tbs,
                (unsigned long long)win[k].before_submit, (unsigned long long)win[k].after_wake);
    }
    fclose(f);
    FILE *p = profile ? fopen(profile, "w") : NULL;
    for (struct block *b = blocks; p && b; b = b->next) {
        if (b->before || b->during || b->after || b->kernel) {
            fprintf(p, "tb %llx %llu %llu %llu %llu %llu\n", (unsigned long long)b->vaddr,
                    (unsigned long long)b->insns, (unsigned long long)b->before,
                    (unsigned long long)b->during, (unsigned long long)b->after,
                    (unsigned long long)b->kernel);
        }
    }
    if (p) {
        fclose(p);
    }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "outfile=", 8) == 0) {
            outfile = strdup(argv[i] + 8);
        } else if (strncmp(argv[i], "profile=", 8) == 0) {
            profile = strdup(argv[i] + 8);
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
