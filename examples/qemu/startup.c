/* Reset and fault handling for Cortex-M (ARMv6-M, ARMv7-M and ARMv8-M): the vector table, C
 * runtime set-up before main, and a fault handler that reports where the program failed.
 * Everything here assembles for ARMv6-M, whose code QEMU runs on a Cortex-M3 board. */
#include <stdint.h>

#include "semihosting.h"

/* Exit status when the CPU takes any exception other than reset (main's statuses are lower). */
#define EXIT_FAULT 2

/* Set by the linker script (boards/sections.ld). */
extern uint32_t __stack_limit[], __stack_top[];
extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __arena_start[], __arena_end[];

/* System Control Block registers. */
#define SCB_CCR (*(volatile uint32_t *)0xE000ED14u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define CPACR_CP10_CP11_FULL_ACCESS (0xFu << 20)
#define CCR_UNALIGN_TRP (1u << 3)

int main(void);
void reset_handler(void) __attribute__((noreturn));
void report_fault(const uint32_t *frame) __attribute__((noreturn));
static void fault_handler(void);

void reset_handler(void)
{
#if defined(__ARM_FP)
    /* Built for an FPU: it (and Helium on the M55) must be on before any code, including
     * compiler-generated copies, touches a floating-point register. */
    SCB_CPACR |= CPACR_CP10_CP11_FULL_ACCESS;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
#if defined(MCUGEN_TRAP_UNALIGNED)
    /* A Cortex-M0+ build on a Cortex-M3 board (targets/cortex-m0plus.toml): make unaligned
     * word and halfword accesses fault, as they always do on ARMv6-M. */
    SCB_CCR |= CCR_UNALIGN_TRP;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif

    const uint32_t *source = __data_load;
    for (uint32_t *target = __data_start; target < __data_end; target++) {
        *target = *source++;
    }
    for (uint32_t *target = __bss_start; target < __bss_end; target++) {
        *target = 0;
    }
    /* The model's arena has a region of its own (boards/sections.ld); static, so zeroed too. */
    for (uint32_t *target = __arena_start; target < __arena_end; target++) {
        *target = 0;
    }
    sh_exit(main());
}

/* The exception frame is on the main or process stack, as bit 2 of EXC_RETURN (in lr)
 * tells; hand its address to report_fault. The fault may be a stack overflow, so report it
 * on a fresh stack (the program ends anyway). Naked: no prologue may touch the stack.
 * Only ARMv6-M instructions (no IT blocks, no immediate TST, low registers). */
__attribute__((naked)) static void fault_handler(void)
{
    __asm volatile(
        "movs r0, #4\n\t"
        "mov r1, lr\n\t"
        "tst r0, r1\n\t"
        "bne 1f\n\t"
        "mrs r0, msp\n\t"
        "b 2f\n"
        "1:\n\t"
        "mrs r0, psp\n"
        "2:\n\t"
        "ldr r1, =__stack_top\n\t"
        "mov sp, r1\n\t"
        "ldr r1, =report_fault\n\t"
        "bx r1\n\t"
        ".ltorg\n\t");
}

void report_fault(const uint32_t *frame)
{
    enum { STACKED_PC = 6, FRAME_WORDS = 8 };
    uint32_t exception_number;
    __asm volatile("mrs %0, ipsr" : "=r"(exception_number));
    sh_print_int("fault: exception ", (long)exception_number, "");
    /* Outside the stack the frame may be unreadable: reading it would fault again. */
    if (frame >= __stack_limit && frame + FRAME_WORDS <= __stack_top) {
        sh_print_hex(" at pc ", frame[STACKED_PC], "");
    } else {
        sh_print_hex(" with sp ", (uint32_t)(uintptr_t)frame, " outside the stack (overflow?)");
    }
    sh_print_hex(" cfsr ", SCB_CFSR, "");
    sh_print_hex(" hfsr ", SCB_HFSR, "\n");
    sh_exit(EXIT_FAULT);
}

/* Only the 16 system exceptions: the firmware enables no interrupt, so anything but reset
 * is unexpected and reported as a fault. */
typedef union {
    void (*handler)(void);
    uint32_t *stack_top;
} vector_entry;

__attribute__((section(".vectors"), used)) static const vector_entry vector_table[16] = {
    [0] = {.stack_top = __stack_top},
    [1] = {.handler = reset_handler},
    [2] = {.handler = fault_handler},  /* NMI */
    [3] = {.handler = fault_handler},  /* HardFault */
    [4] = {.handler = fault_handler},  /* MemManage */
    [5] = {.handler = fault_handler},  /* BusFault */
    [6] = {.handler = fault_handler},  /* UsageFault */
    [7] = {.handler = fault_handler},  /* SecureFault (ARMv8-M) */
    [11] = {.handler = fault_handler}, /* SVCall */
    [12] = {.handler = fault_handler}, /* DebugMonitor */
    [14] = {.handler = fault_handler}, /* PendSV */
    [15] = {.handler = fault_handler}, /* SysTick */
};
