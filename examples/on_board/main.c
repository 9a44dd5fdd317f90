/* On a real board: check the flashed model against the oracle, then run it and print each
 * layer's cycles. A starting point, not a complete firmware: the board's start-up code, clock
 * set-up and a way to print (a UART, SWO, RTT) are the board project's, which provides
 * board_print() (writes a NUL-terminated string).
 *
 * The model is built with both options and the name `model` (with another --name, replace
 * model_ and MODEL_ below), e.g. for an STM32H743:
 *
 *     mcugen build --model person_detect.tflite --target stm32h743zi --name model \
 *         --selftest --profile --out build/model
 *
 * and this file compiled with the folder's .c files and -I on the folder. What it prints goes
 * back into the reports, beside the estimate, with
 *
 *     mcugen report build/model --profile-log uart.txt
 *
 * (the "mcugen-profile" lines; anything else in the log is skipped). Built without --selftest
 * or --profile, the parts for them compile away. examples/qemu/main.c does the same in QEMU. */
#include <stdint.h>

#include "model.h"

void board_print(const char *text);

static model_input_t input[MODEL_INPUT_SIZE];
static model_output_t output[MODEL_OUTPUT_SIZE];

#if defined(MODEL_SELFTEST_VECTORS) || defined(MODEL_PROFILE)
/* n in decimal or hexadecimal, without printf (which may not fit a small part). */
static void print_number(const char *before, uint32_t n, const char *after)
{
    char text[11];
    int at = 10;
    text[at] = '\0';
    do {
        text[--at] = (char)('0' + n % 10u);
        n /= 10u;
    } while (n != 0u);
    board_print(before);
    board_print(text + at);
    board_print(after);
}

#endif

#if defined(MODEL_SELFTEST_VECTORS)
static void print_hex(const char *before, uint32_t n, const char *after)
{
    char text[9];
    for (int i = 7; i >= 0; i--, n >>= 4) {
        text[i] = "0123456789abcdef"[n & 15u];
    }
    text[8] = '\0';
    board_print(before);
    board_print(text);
    board_print(after);
}
#endif

int main(void)
{
    int status = 0;
#if defined(MODEL_SELFTEST_VECTORS)
    /* 0: every layer of every vector gave the oracle's checksum. Otherwise the index + 1 of
     * the first layer that differs (another compiler flag, the linker's placement, a bad flash
     * write...); then which vector, and both checksums. */
    const int layer = model_selftest();
    print_number("selftest: ", (uint32_t)layer, layer == 0 ? " (bit-exact)\n"
                                                           : " (index + 1 of the layer)\n");
    for (int v = 0; layer != 0 && v < MODEL_SELFTEST_VECTORS; v++) {
        const uint32_t *expected;
        const uint32_t *actual;
        (void)model_selftest_vector(v, &expected, &actual);
        if (expected[layer - 1] != actual[layer - 1]) {
            print_number("vector ", (uint32_t)v, "");
            print_hex(": expected ", expected[layer - 1], "");
            print_hex(", computed ", actual[layer - 1], "\n");
            break;
        }
    }
    status = layer;
#endif
    /* The camera or sensor fills input here. */
    if (model_invoke(input, output) != 0) {
        board_print("model_invoke failed\n");
        return 1;
    }
#if defined(MODEL_PROFILE)
    /* What `mcugen report --profile-log` reads: a header, then one line per layer. */
    board_print("mcugen-profile counter=");
    board_print(model_profile_counter);
    print_number(" layers=", MODEL_LAYERS, "\n");
    for (int i = 0; i < MODEL_LAYERS; i++) {
        print_number("mcugen-profile ", (uint32_t)i, "");
        print_number(" ", model_layer_cycles[i], " ");
        board_print(model_layer_names[i]);
        board_print("\n");
    }
#endif
    return status;
}
