/* The instruction-count markers of mcugen_hooks.h: one marker per function, each function
 * aligned so that its two instructions never straddle a page (see mcugen_hooks.h).
 *
 * A marker is the 32-bit Thumb-2 hint encoding of `dbg #n`, F3AF 80Fn, written with .inst.w:
 * ARMv6-M has no DBG instruction and the assembler refuses the mnemonic there, while the bytes
 * assemble for every core. On ARMv7-M and ARMv8-M (and on the Cortex-M3 that runs Cortex-M0+
 * builds in QEMU) they execute as a hint, a no-op; a real ARMv6-M core would fault on them,
 * so these markers belong in QEMU firmware only. plugin/icount.c recognises these bytes. */
#define MCUGEN_MARKER_FUNCTION(name, encoding)                      \
    __attribute__((noinline, aligned(8))) void name(void)           \
    {                                                                \
        __asm volatile(".inst.w " #encoding ::: "memory");           \
    }

MCUGEN_MARKER_FUNCTION(mcugen_marker_layer_done, 0xf3af80f1)
MCUGEN_MARKER_FUNCTION(mcugen_marker_invoke_begin, 0xf3af80f2)
MCUGEN_MARKER_FUNCTION(mcugen_marker_invoke_end, 0xf3af80f3)
