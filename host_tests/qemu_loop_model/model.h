/* A stand-in model with instruction counts known by construction, for testing the QEMU
 * firmware and the icount plugin (host_tests/test_qemu_firmware.py).
 *
 * input[0], input[1]: iterations (1..255) of the two-instruction loops in layers 0 and 1
 * input[2]:           the status model_invoke returns (int8)
 * input[3]:           0 runs normally, 1 executes an undefined instruction, 2 spins forever,
 *                     3 returns 0 if floating point works (3.0f + 3.0f == 6), without outputs,
 *                     4 loads a word from an unaligned address (faults where unaligned
 *                     accesses trap), then returns 0 without outputs
 * output[0] = input[1] + model_offsets[0], output[1] = input[0] + model_offsets[1] (mod 256),
 * with model_offsets in .data, so the outputs also check the start-up copy of .data. */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

typedef int8_t model_input_t;
typedef int8_t model_output_t;

#define MODEL_INPUT_SIZE 4
#define MODEL_OUTPUT_SIZE 2
#define MODEL_ARENA_SIZE 0

int model_invoke(const int8_t *input, int8_t *output);

#endif
