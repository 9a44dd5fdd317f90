/* Reset and fault handling for the parts' firmware (ARMv6-M and ARMv7-M): the 16 system
 * vectors, the C runtime set-up before main, and a fault report over the UART. The firmware
 * enables no interrupt, so the parts' peripheral vectors are left out. */
#include <stdint.h>

#include "uart.h"

#if defined(MCUGEN_QEMU_EXIT)
#include "semihosting.h"
#endif

/* Exit status when the CPU takes any exception other than reset (main's statuses are lower). */
#define EXIT_FAULT 2

/* Set by the linker script (sections.ld). */
extern uint32_t __stack_limit[], __stack_top[];
extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __arena_start[], __arena_end[];

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define CPACR_CP10_CP11_FULL_ACCESS (0xFu << 20)

int main(void);
void reset_handler(void) __attribute__((noreturn));
void report_fault(const uint32_t *frame) __attribute__((noreturn));
static void fault_handler(void);

/* In QEMU (built with MCUGEN_QEMU_EXIT) the status ends the emulator through semihosting; on
 * the part, the core sleeps. */
static void __attribute__((noreturn)) finish(int status)
{
#if defined(MCUGEN_QEMU_EXIT)
    sh_exit(status);
#else
    (void)status;
    for (;;) {
        __asm volatile("wfi");
    }
#endif
}

static void zero(uint32_t *begin, uint32_t *end)
{
    for (uint32_t *word = begin; word < end; word++) {
        *word = 0;
    }
}

void reset_handler(void)
{
#if defined(__ARM_FP)
    /* The FPU must be on before any code touches a floating-point register. */
    SCB_CPACR |= CPACR_CP10_CP11_FULL_ACCESS;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    const uint32_t *source = __data_load;
    for (uint32_t *target = __data_start; target < __data_end; target++) {
        *target = *source++;
    }
    zero(__bss_start, __bss_end);
    zero(__arena_start, __arena_end);
    finish(main());
}

/* The exception frame is on the main or process stack, as bit 2 of EXC_RETURN (in lr) tells;
 * report it from a fresh stack (the fault may be an overflow). ARMv6-M instructions only. */
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
    uart_puts("fault: exception ");
    uart_put_uint(exception_number);
    if (frame >= __stack_limit && frame + FRAME_WORDS <= __stack_top) {
        uart_puts(" at pc 0x");
        uart_put_hex(frame[STACKED_PC], 8);
    }
    uart_puts("\n");
    finish(EXIT_FAULT);
}

typedef union {
    void (*handler)(void);
    uint32_t *stack_top;
} vector_entry;

__attribute__((section(".vectors"), used)) static const vector_entry vector_table[16] = {
    [0] = {.stack_top = __stack_top},
    [1] = {.handler = reset_handler},
    [2] = {.handler = fault_handler},  /* NMI */
    [3] = {.handler = fault_handler},  /* HardFault */
    [4] = {.handler = fault_handler},  /* MemManage (ARMv7-M) */
    [5] = {.handler = fault_handler},  /* BusFault (ARMv7-M) */
    [6] = {.handler = fault_handler},  /* UsageFault (ARMv7-M) */
    [11] = {.handler = fault_handler}, /* SVCall */
    [12] = {.handler = fault_handler}, /* DebugMonitor (ARMv7-M) */
    [14] = {.handler = fault_handler}, /* PendSV */
    [15] = {.handler = fault_handler}, /* SysTick */
};
