/* Runs the generated model on every input in input.bin and writes the results to output.bin.
 *
 * input.bin holds N inputs of MODEL_INPUT_SIZE values of the model's input type (model_input_t:
 * int8_t, uint8_t or float, little-endian) back to back; output.bin receives N outputs of
 * MODEL_OUTPUT_SIZE values of model_output_t. Both files are in the host's working directory,
 * reached through semihosting. To start a real board project, keep the loop around
 * model_invoke and replace the file I/O with the board's camera or sensor and output. */
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
    }
    sh_close(input_file);
    sh_close(output_file);
    return status;
}
