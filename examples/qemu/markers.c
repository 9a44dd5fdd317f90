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

#if defined(MCUGEN_HINT_MARKERS)
/* examples/parts on a Cortex-M0 in QEMU (microbit): QEMU decodes no 32-bit hint for ARMv6-M,
 * so marker n is the 16-bit reserved hint BF(8+n)0, which QEMU (and the architecture: "behaves
 * as a NOP") executes as a no-op on every M-profile core; plugin/icount.c recognises both. */
#define MCUGEN_SHORT_MARKER_FUNCTION(name, encoding)                \
    __attribute__((noinline, aligned(8))) void name(void)           \
    {                                                                \
        __asm volatile(".inst.n " #encoding ::: "memory");           \
    }

MCUGEN_SHORT_MARKER_FUNCTION(mcugen_marker_layer_done, 0xbf90)
MCUGEN_SHORT_MARKER_FUNCTION(mcugen_marker_invoke_begin, 0xbfa0)
MCUGEN_SHORT_MARKER_FUNCTION(mcugen_marker_invoke_end, 0xbfb0)
#else
MCUGEN_MARKER_FUNCTION(mcugen_marker_layer_done, 0xf3af80f1)
MCUGEN_MARKER_FUNCTION(mcugen_marker_invoke_begin, 0xf3af80f2)
MCUGEN_MARKER_FUNCTION(mcugen_marker_invoke_end, 0xf3af80f3)
#endif
