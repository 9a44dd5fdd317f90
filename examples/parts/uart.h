/* The part's UART, as each part's file (stm32f405rg.c, nrf51822.c) drives it: 115200 baud,
 * 8N1, transmit only. Nothing but the registers of the part's reference manual. */
#ifndef PART_UART_H
#define PART_UART_H

#include <stdint.h>

/* Clocks, pins and the UART itself, from the reset state. */
void uart_init(void);
void uart_putc(char c);

/* Built on uart_putc (main.c). */
void uart_puts(const char *text);
void uart_put_uint(uint32_t value);
void uart_put_hex(uint32_t value, int digits);

#endif
