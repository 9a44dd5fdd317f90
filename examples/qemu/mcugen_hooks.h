/* Instruction-count markers, force-included (-include) into every firmware source.
 *
 * A marker is `dbg #n` (encoded by hand in markers.c, so that it assembles for ARMv6-M too): a
 * hint that executes as a no-op on ARMv7-M and ARMv8-M, so the firmware behaves as without it,
 * while the icount QEMU plugin records (n, instructions so far) each time one executes. The
 * plugin does not count the markers themselves.
 *
 *   dbg #1  a layer of the model finished          (MCUGEN_LAYER_DONE, called by generated code)
 *   dbg #2  model_invoke is about to be called     (MCUGEN_INVOKE_BEGIN, in main.c)
 *   dbg #3  model_invoke returned                  (MCUGEN_INVOKE_END, in main.c)
 *
 * mcugen/qemu.py relies on these numbers.
 *
 * Each marker is the whole body of a small function of its own (markers.c), 8-byte aligned, so
 * QEMU always translates `dbg #n; bx lr` as one block within one page. Inline in other code, a
 * marker can end up alone in a block when the next instruction straddles a 1 KiB page, and
 * QEMU 7.2 then loses the plugin's callback for it (we saw one layer marker in 65 vanish).
 * The call costs two counted instructions (the bl before the marker, the bx lr after it), and
 * as a call to an external function it keeps the compiler from moving a layer's loads and
 * stores across its marker, so each layer's count covers its own work. */
#ifndef MCUGEN_HOOKS_H
#define MCUGEN_HOOKS_H

void mcugen_marker_layer_done(void);
void mcugen_marker_invoke_begin(void);
void mcugen_marker_invoke_end(void);

#define MCUGEN_LAYER_DONE(index, output, bytes) \
    do {                                        \
        (void)(index);                          \
        (void)(output);                         \
        (void)(bytes);                          \
        mcugen_marker_layer_done();             \
    } while (0)

#define MCUGEN_INVOKE_BEGIN() mcugen_marker_invoke_begin()
#define MCUGEN_INVOKE_END() mcugen_marker_invoke_end()

#endif
