/* QEMU firmware of host_tests/test_caller_arena.py: two models built with --arena caller, on
 * one Cortex-M core, through examples/qemu's start-up and semihosting (MAIN= of its Makefile).
 *
 * 1. Two instances of model A interleaved: main runs A on its arena over and over while the
 *    SysTick interrupt, armed just before each of main's calls, runs A on another arena in
 *    the middle of main's inference (one inference per tick, the next tick armed by main).
 * 2. Models A and B time-sharing one arena of the larger size (filled with 0xA5 first):
 *    A's first input, B's first input, A's second, ...
 *
 * Reads a.bin and b.bin (N inputs each), writes a_main.bin and a_interrupt.bin (phase 1: N
 * outputs each), a_shared.bin and b_shared.bin (phase 2), and prints how many of the
 * interrupt's inferences began while main's was running. Compiled with
 *   -DMODEL_A=name -DMODEL_A_UPPER=NAME -DMODEL_A_HEADER='"name.h"' (and the same for B).
 * Exit status 0, or 1 if an invoke failed or main's outputs changed between rounds, 3 on a
 * file error (2 is a fault, startup.c). */
#include <stdint.h>
#include <string.h>

#include "semihosting.h"
#include MODEL_A_HEADER
#include MODEL_B_HEADER

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define A(suffix) XCAT(MODEL_A, suffix)
#define B(suffix) XCAT(MODEL_B, suffix)
#define A_UPPER(suffix) XCAT(MODEL_A_UPPER, suffix)
#define B_UPPER(suffix) XCAT(MODEL_B_UPPER, suffix)
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define COUNT 3 /* inputs per model */
#define ALIGN MAX(A_UPPER(_ARENA_ALIGN), B_UPPER(_ARENA_ALIGN))
#define ALIGNED __attribute__((aligned(ALIGN)))

/* SysTick and the vector table offset (ARMv7-M and ARMv8-M). */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SYST_ENABLE_TICKINT_CPU_CLOCK 7u
/* Cycles from arming to the tick: far less than one inference, so that it lands inside one. */
#define TICK_CYCLES 20000u

static A(_input_t) inputs_a[COUNT][A_UPPER(_INPUT_SIZE)];
static B(_input_t) inputs_b[COUNT][B_UPPER(_INPUT_SIZE)];
static A(_output_t) main_a[COUNT][A_UPPER(_OUTPUT_SIZE)];
static A(_output_t) interrupt_a[COUNT][A_UPPER(_OUTPUT_SIZE)];
static A(_output_t) shared_a[COUNT][A_UPPER(_OUTPUT_SIZE)];
static B(_output_t) shared_b[COUNT][B_UPPER(_OUTPUT_SIZE)];
static A(_output_t) again[A_UPPER(_OUTPUT_SIZE)];

static uint8_t arena_main[MAX(A_UPPER(_ARENA_SIZE), 1)] ALIGNED;
static uint8_t arena_interrupt[MAX(A_UPPER(_ARENA_SIZE), 1)] ALIGNED;
static uint8_t arena_shared[MAX(MAX(A_UPPER(_ARENA_SIZE), B_UPPER(_ARENA_SIZE)), 1)] ALIGNED;

static volatile int main_running;
static volatile int interrupt_done;
static volatile int interrupt_preempted;
static volatile int interrupt_status;

/* The interrupt's inference: A on its own arena, in the middle of main's. */
static void systick_handler(void)
{
    SYST_CSR = 0; /* one inference per tick; main arms the next */
    const int index = interrupt_done;
    if (index >= COUNT) {
        return;
    }
    if (main_running) {
        interrupt_preempted++;
    }
    const int status = A(_invoke_arena)(arena_interrupt, inputs_a[index], interrupt_a[index]);
    if (status != 0) {
        interrupt_status = status;
    }
    interrupt_done = index + 1;
}

/* A copy of the start-up code's 16 system vectors with SysTick's replaced (128-byte aligned,
 * as VTOR requires of a table this size). */
static uint32_t vectors[16] __attribute__((aligned(128)));

static void install_systick_handler(void)
{
    /* Word by word through a volatile pointer: the table may be at address 0. */
    const volatile uint32_t *current = (const volatile uint32_t *)(uintptr_t)SCB_VTOR;
    for (int i = 0; i < 16; i++) {
        vectors[i] = current[i];
    }
    vectors[15] = (uint32_t)(uintptr_t)systick_handler;
    __asm volatile("dsb" ::: "memory");
    SCB_VTOR = (uint32_t)(uintptr_t)vectors;
    __asm volatile("dsb\n\tisb" ::: "memory");
}

static void arm_tick(void)
{
    SYST_RVR = TICK_CYCLES;
    SYST_CVR = 0;
    SYST_CSR = SYST_ENABLE_TICKINT_CPU_CLOCK;
}

static int read_all(const char *path, void *buffer, long bytes)
{
    const int file = sh_open(path, SH_MODE_READ_BINARY);
    if (file < 0 || sh_flen(file) != bytes || sh_read(file, buffer, (size_t)bytes) != 0) {
        sh_print("cannot read an input file\n");
        return 3;
    }
    sh_close(file);
    return 0;
}

static int write_all(const char *path, const void *buffer, long bytes)
{
    const int file = sh_open(path, SH_MODE_WRITE_BINARY);
    if (file < 0 || sh_write(file, buffer, (size_t)bytes) != 0) {
        sh_print("cannot write an output file\n");
        return 3;
    }
    sh_close(file);
    return 0;
}

/* Phase 1: main's inferences, each with a tick armed just before it, until the interrupt has
 * run every input; main's outputs of later rounds must equal its first. */
static int interleave_instances(void)
{
    install_systick_handler();
    int status = 0;
    for (int call = 0; status == 0 && (call < COUNT || interrupt_done < COUNT); call++) {
        const int index = call % COUNT;
        A(_output_t) *output = call < COUNT ? main_a[index] : again;
        if (interrupt_done < COUNT) {
            arm_tick();
        }
        main_running = 1;
        status = A(_invoke_arena)(arena_main, inputs_a[index], output);
        main_running = 0;
        if (status == 0 && call >= COUNT && memcmp(again, main_a[index], sizeof again) != 0) {
            sh_print("main's output changed between rounds\n");
            return 1;
        }
    }
    SYST_CSR = 0;
    sh_print_int("interleaved: ", interrupt_preempted, "");
    sh_print_int(" of ", COUNT, " interrupt inferences began inside main's\n");
    return status != 0 ? status : interrupt_status;
}

/* Phase 2: both models, one after the other, on one arena. */
static int share_arena(void)
{
    memset(arena_shared, 0xA5, sizeof arena_shared);
    for (int i = 0; i < COUNT; i++) {
        int status = A(_invoke_arena)(arena_shared, inputs_a[i], shared_a[i]);
        if (status == 0) {
            status = B(_invoke_arena)(arena_shared, inputs_b[i], shared_b[i]);
        }
        if (status != 0) {
            return status;
        }
    }
    return 0;
}

int main(void)
{
    if (read_all("a.bin", inputs_a, sizeof inputs_a) != 0
            || read_all("b.bin", inputs_b, sizeof inputs_b) != 0) {
        return 3;
    }
    /* Never rely on a zeroed arena (.bss is zeroed by the start-up code). */
    memset(arena_main, 0xA5, sizeof arena_main);
    memset(arena_interrupt, 0x5A, sizeof arena_interrupt);
    int status = interleave_instances();
    if (status == 0) {
        status = share_arena();
    }
    if (status != 0) {
        sh_print_int("invoke returned ", status, "\n");
        return 1;
    }
    if (write_all("a_main.bin", main_a, sizeof main_a) != 0
            || write_all("a_interrupt.bin", interrupt_a, sizeof interrupt_a) != 0
            || write_all("a_shared.bin", shared_a, sizeof shared_a) != 0
            || write_all("b_shared.bin", shared_b, sizeof shared_b) != 0) {
        return 3;
    }
    return 0;
}
