/* Runs the generated model on every input in input.bin and writes the results to output.bin.
 *
 * input.bin holds N inputs of MODEL_INPUT_SIZE values of the model's input type (model_input_t:
 * int8_t, uint8_t or float, little-endian) back to back; output.bin receives N outputs of
 * MODEL_OUTPUT_SIZE values of model_output_t. Both files are in the host's working directory,
 * reached through semihosting. To start a real board project, keep the loop around
 * model_invoke and replace the file I/O with the board's camera or sensor and output.
 *
 * A model built with --selftest: before the inferences, model_selftest() checks every layer
 * against the oracle's checksums and the firmware prints "selftest: 0" (or the index + 1 of
 * the first layer that differs, with the vector and both checksums). With --profile: after each
 * inference it prints a "mcugen-profile" line per layer (cycles, name), which
 * `mcugen report DIR --profile-log FILE` reads back into the reports. */
#include <stdint.h>

#include "mcugen_hooks.h"
#include "model.h"
#include "semihosting.h"

/* Exit statuses (a fault exits with 2, see startup.c). */
enum {
    EXIT_OK = 0,
    EXIT_INVOKE_FAILED = 1,
    EXIT_IO_ERROR = 3,
};

static model_input_t input[MODEL_INPUT_SIZE];
static model_output_t output[MODEL_OUTPUT_SIZE];

#if defined(MODEL_SELFTEST_VECTORS)
/* Runs the self-check; prints its result, and for a failure where and by how much. */
static int run_selftest(void)
{
    const int layer = model_selftest();
    sh_print_int("selftest: ", layer, layer == 0 ? " (every layer matches the oracle)\n"
                                                : " (index + 1 of the first layer that differs)\n");
    for (int v = 0; layer != 0 && v < MODEL_SELFTEST_VECTORS; v++) {
        const uint32_t *expected;
        const uint32_t *actual;
        (void)model_selftest_vector(v, &expected, &actual);
        if (expected[layer - 1] != actual[layer - 1]) {
            sh_print_int("selftest: vector ", v, "");
            sh_print_int(", layer ", layer - 1, "");
            sh_print_hex(": expected ", expected[layer - 1], "");
            sh_print_hex(", computed ", actual[layer - 1], "\n");
            break;
        }
    }
    return layer;
}
#endif

#if defined(MODEL_PROFILE)
/* An unsigned 32-bit number in decimal (sh_print_int takes a long, 32 bits here). */
static void print_unsigned(uint32_t value)
{
    char text[11];
    int at = 10;
    text[at] = '\0';
    do {
        text[--at] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    sh_print(text + at);
}

/* One line per layer of the last inference: "mcugen-profile <layer> <cycles> <name>". */
static void print_profile(void)
{
    sh_print("mcugen-profile counter=");
    sh_print(model_profile_counter);
    sh_print_int(" layers=", MODEL_LAYERS, "\n");
    for (int layer = 0; layer < MODEL_LAYERS; layer++) {
        sh_print_int("mcugen-profile ", layer, " ");
        print_unsigned(model_layer_cycles[layer]);
        sh_print(" ");
        sh_print(model_layer_names[layer]);
        sh_print("\n");
    }
}
#endif

static int fail_io(const char *message)
{
    sh_print(message);
    return EXIT_IO_ERROR;
}

int main(void)
{
    const int input_file = sh_open("input.bin", SH_MODE_READ_BINARY);
    if (input_file < 0) {
        return fail_io("cannot open input.bin\n");
    }
    const long input_bytes = sh_flen(input_file);
    if (input_bytes <= 0 || input_bytes % (long)sizeof input != 0) {
        return fail_io("input.bin is not a whole number of model inputs\n");
    }
    const int output_file = sh_open("output.bin", SH_MODE_WRITE_BINARY);
    if (output_file < 0) {
        return fail_io("cannot open output.bin\n");
    }

    int status = EXIT_OK;
#if defined(MODEL_SELFTEST_VECTORS)
    (void)run_selftest(); /* printed: the test reads the line; a board might halt here */
#endif
    for (long index = 0; index < input_bytes / (long)sizeof input; index++) {
        if (sh_read(input_file, input, sizeof input) != 0) {
            return fail_io("cannot read input.bin\n");
        }
        MCUGEN_INVOKE_BEGIN();
        const int result = model_invoke(input, output);
        MCUGEN_INVOKE_END();
        if (sh_write(output_file, output, sizeof output) != 0) {
            return fail_io("cannot write output.bin\n");
        }
        sh_print_int("inference ", index, "");
        sh_print_int(": model_invoke returned ", result, "\n");
        if (result != 0) {
            status = EXIT_INVOKE_FAILED;
        }
#if defined(MODEL_PROFILE)
        print_profile();
#endif
    }
    sh_close(input_file);
    sh_close(output_file);
    return status;
}
