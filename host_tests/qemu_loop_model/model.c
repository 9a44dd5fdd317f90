/* model_invoke in Thumb assembly, so every executed instruction is known (see model.h). Only
 * ARMv6-M instructions (low registers, no IT blocks), so the same file builds for every core.
 *
 * Markers (`dbg #n`, written as .inst.w so that ARMv6-M assembles them): #4 on entry and #5
 * before returning bracket the function; #1 ends each of three layers. From dbg #4,
 * instructions executed (markers are not counted):
 *   layer 0: 9 (behaviour checks) + 1 + 2*input[0] + 1 = 11 + 2*input[0]  up to the first dbg #1
 *   layer 1: 1 + 2*input[1] + 1 = 2 + 2*input[1]                           up to the second
 *   layer 2: 0 (two markers in a row)
 *   outputs and status: 12, then dbg #5.
 * The `movs r3, #0` before the layer markers puts each marker in the middle of a translation
 * block, the case where the plugin must discount the block's remaining instructions.
 * The function (under 128 bytes) is 128-byte aligned, so it never comes close to the end of a
 * 1 KiB page, where QEMU 7.2 can lose a marker's callback (seen on the Cortex-M33 with dbg #5
 * six bytes before a page boundary; see examples/qemu/mcugen_hooks.h). */
#include "model.h"

int8_t model_offsets[2] = {3, 100};

/* Behaviour 3: 0 if floating point works (hardware FPU or libgcc's soft float). */
int model_float_check(int value);
int model_float_check(int value)
{
    volatile float x = (float)value;
    return (int)(x + x) - 2 * value;
}

__asm(
    "    .section .text.model_invoke,\"ax\",%progbits\n"
    "    .syntax unified\n"
    "    .thumb\n"
    "    .balign 128\n"
    "    .global model_invoke\n"
    "    .type model_invoke, %function\n"
    "    .thumb_func\n"
    "model_invoke:\n"
    "    .inst.w 0xf3af80f4\n"
    "    ldrb r2, [r0, #3]\n"
    "    cmp r2, #1\n"
    "    beq 8f\n"
    "    cmp r2, #2\n"
    "    beq 9f\n"
    "    cmp r2, #3\n"
    "    beq 7f\n"
    "    cmp r2, #4\n"
    "    beq 6f\n"
    "    ldrb r2, [r0, #0]\n"
    "1:  subs r2, r2, #1\n"
    "    bne 1b\n"
    "    movs r3, #0\n"
    "    .inst.w 0xf3af80f1\n"
    "    ldrb r2, [r0, #1]\n"
    "2:  subs r2, r2, #1\n"
    "    bne 2b\n"
    "    movs r3, #0\n"
    "    .inst.w 0xf3af80f1\n"
    "    .inst.w 0xf3af80f1\n"
    "    ldr r3, =model_offsets\n"
    "    ldrb r2, [r0, #1]\n"
    "    ldrb r3, [r3, #0]\n"
    "    adds r2, r2, r3\n"
    "    strb r2, [r1, #0]\n"
    "    ldr r3, =model_offsets\n"
    "    ldrb r2, [r0, #0]\n"
    "    ldrb r3, [r3, #1]\n"
    "    adds r2, r2, r3\n"
    "    strb r2, [r1, #1]\n"
    "    ldrb r2, [r0, #2]\n"
    "    sxtb r0, r2\n"
    "    .inst.w 0xf3af80f5\n"
    "    bx lr\n"
    /* Behaviour 4: a word load from sp + 1, unaligned (sp is 8-byte aligned). ARMv7-M does it;
     * with CCR.UNALIGN_TRP set, as on ARMv6-M, it faults. Returns 0 when it did not fault. */
    "6:  mov r2, sp\n"
    "    adds r2, r2, #1\n"
    "    ldr r2, [r2]\n"
    "    movs r0, #0\n"
    "    bx lr\n"
    "7:  push {r4, lr}\n"
    "    movs r0, #3\n"
    "    bl model_float_check\n"
    "    pop {r4, pc}\n"
    "8:  udf #0\n"
    "9:  b 9b\n"
    "    .ltorg\n"
    "    .size model_invoke, . - model_invoke\n");
