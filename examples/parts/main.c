/* Runs the generated model on the inputs built into the firmware (inputs.c, in flash) and
 * prints each output over the part's UART, one line per inference:
 *
 *   output 0: 7f80   (the output's bytes in memory order, two hex digits each)
 *   ...
 *   done 3 0         (inferences, and 0 if every model_invoke returned 0)
 *
 * A real project keeps the call to model_invoke and replaces the inputs with its camera's or
 * sensor's. `mcugen run --target PART` writes inputs.c and reads the lines back. */
#include <stdint.h>

#include "inputs.h"
#include "model.h"
#include "uart.h"

/* The instruction-count markers exist in QEMU builds only (examples/qemu/mcugen_hooks.h). */
#ifndef MCUGEN_INVOKE_BEGIN
#define MCUGEN_INVOKE_BEGIN() ((void)0)
#define MCUGEN_INVOKE_END() ((void)0)
#endif

static model_output_t output[MODEL_OUTPUT_SIZE];

void uart_puts(const char *text)
{
    while (*text != '\0') {
        uart_putc(*text++);
    }
}

void uart_put_uint(uint32_t value)
{
    char digits[11];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0);
    while (count > 0) {
        uart_putc(digits[--count]);
    }
}

void uart_put_hex(uint32_t value, int digits)
{
    static const char hex[16] = "0123456789abcdef";
    for (int digit = digits - 1; digit >= 0; digit--) {
        uart_putc(hex[(value >> (4 * digit)) & 0xFu]);
    }
}

int main(void)
{
    uart_init();
    int failed = 0;
    for (uint32_t index = 0; index < mcugen_input_count; index++) {
        MCUGEN_INVOKE_BEGIN();
        const int status = model_invoke(mcugen_inputs[index], output);
        MCUGEN_INVOKE_END();
        uart_puts("output ");
        uart_put_uint(index);
        uart_puts(": ");
        const uint8_t *bytes = (const uint8_t *)output;
        for (uint32_t byte = 0; byte < sizeof output; byte++) {
            uart_put_hex(bytes[byte], 2);
        }
        if (status != 0) {
            uart_puts(" (model_invoke returned ");
            uart_put_uint((uint32_t)status);
            uart_puts(")");
            failed = 1;
        }
        uart_puts("\n");
    }
    uart_puts("done ");
    uart_put_uint(mcugen_input_count);
    uart_puts(failed ? " 1\n" : " 0\n");
    return failed;
}
