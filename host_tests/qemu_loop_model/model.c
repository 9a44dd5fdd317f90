/* model_invoke in Thumb-2 assembly, so every executed instruction is known (see model.h).
 *
 * Markers: dbg #4 on entry and dbg #5 before returning bracket the function; dbg #1 ends each
 * of three layers. From dbg #4, instructions executed (markers are not counted):
 *   layer 0: 7 (behaviour checks) + 1 + 2*input[0] + 1 = 9 + 2*input[0]  up to the first dbg #1
 *   layer 1: 1 + 2*input[1] + 1 = 2 + 2*input[1]                          up to the second
 *   layer 2: 0 (two markers in a row)
 *   outputs and status: 10, then dbg #5.
 * The `movs r3, #0` before the layer markers puts each marker in the middle of a translation
 * block, the case where the plugin must discount the block's remaining instructions. */
#include "model.h"

int8_t model_offsets[2] = {3, 100};

__asm(
    "    .section .text.model_invoke,\"ax\",%progbits\n"
    "    .syntax unified\n"
    "    .thumb\n"
    "    .global model_invoke\n"
    "    .type model_invoke, %function\n"
    "    .thumb_func\n"
    "model_invoke:\n"
    "    dbg #4\n"
    "    ldrb r2, [r0, #3]\n"
    "    cmp r2, #1\n"
    "    beq 8f\n"
    "    cmp r2, #2\n"
    "    beq 9f\n"
    "    cmp r2, #3\n"
    "    beq 7f\n"
    "    ldrb r2, [r0, #0]\n"
    "1:  subs r2, r2, #1\n"
    "    bne 1b\n"
    "    movs r3, #0\n"
    "    dbg #1\n"
    "    ldrb r2, [r0, #1]\n"
    "2:  subs r2, r2, #1\n"
    "    bne 2b\n"
    "    movs r3, #0\n"
    "    dbg #1\n"
    "    dbg #1\n"
    "    ldr r3, =model_offsets\n"
    "    ldrb r2, [r0, #1]\n"
    "    ldrb r12, [r3, #0]\n"
    "    add r2, r2, r12\n"
    "    strb r2, [r1, #0]\n"
    "    ldrb r2, [r0, #0]\n"
    "    ldrb r12, [r3, #1]\n"
    "    add r2, r2, r12\n"
    "    strb r2, [r1, #1]\n"
    "    ldrsb r0, [r0, #2]\n"
    "    dbg #5\n"
    "    bx lr\n"
    "7:  vmov s0, r2\n"
    "    vcvt.f32.u32 s0, s0\n"
    "    vadd.f32 s0, s0, s0\n"
    "    vcvt.u32.f32 s0, s0\n"
    "    vmov r0, s0\n"
    "    subs r0, r0, #6\n"
    "    bx lr\n"
    "8:  udf #0\n"
    "9:  b 9b\n"
    "    .ltorg\n"
    "    .size model_invoke, . - model_invoke\n");
