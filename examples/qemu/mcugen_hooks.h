/* Instruction-count markers, force-included (-include) into every firmware source.
 *
 * A marker is `dbg #n`: a hint that executes as a no-op on ARMv7-M and ARMv8-M, so the firmware
 * behaves as without it, while the icount QEMU plugin records (n, instructions so far) each time
 * one executes. The plugin does not count the markers themselves.
 *
 *   dbg #1  a layer of the model finished          (MCUGEN_LAYER_DONE, called by generated code)
 *   dbg #2  model_invoke is about to be called     (MCUGEN_INVOKE_BEGIN, in main.c)
 *   dbg #3  model_invoke returned                  (MCUGEN_INVOKE_END, in main.c)
 *
 * mcugen/qemu.py relies on these numbers. The "memory" clobber keeps the compiler from moving
 * a layer's loads and stores across its marker, so each layer's count covers its own work. */
#ifndef MCUGEN_HOOKS_H
#define MCUGEN_HOOKS_H

#define MCUGEN_MARKER(number) __asm volatile("dbg #" #number ::: "memory")

#define MCUGEN_LAYER_DONE(index, output, bytes) \
    do {                                        \
        (void)(index);                          \
        (void)(output);                         \
        (void)(bytes);                          \
        MCUGEN_MARKER(1);                       \
    } while (0)

#define MCUGEN_INVOKE_BEGIN() MCUGEN_MARKER(2)
#define MCUGEN_INVOKE_END() MCUGEN_MARKER(3)

#endif
