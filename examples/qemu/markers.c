/* The instruction-count markers of mcugen_hooks.h: one `dbg #n` per function, each function
 * aligned so that its two instructions never straddle a page (see mcugen_hooks.h). */
#define MCUGEN_MARKER_FUNCTION(name, number)                         \
    __attribute__((noinline, aligned(8))) void name(void)           \
    {                                                                \
        __asm volatile("dbg #" #number ::: "memory");                \
    }

MCUGEN_MARKER_FUNCTION(mcugen_marker_layer_done, 1)
MCUGEN_MARKER_FUNCTION(mcugen_marker_invoke_begin, 2)
MCUGEN_MARKER_FUNCTION(mcugen_marker_invoke_end, 3)
