/* nRF51822: UART0 on P0.24 (TX; the micro:bit's USB serial line), from the reset clock.
 * Addresses, values and the start/ready handshake from Nordic's nRF51 Series Reference Manual
 * v3.0: Table 2 "Instantiation" (UART0 at 0x40002000) and chapter 29 "UART" (its registers:
 * TASKS_STARTTX, EVENTS_TXDRDY, ENABLE, PSELTXD, TXD, BAUDRATE). The micro:bit's pin from its
 * published schematic (TGT_TX = P0.24). */
#include <stdint.h>

#include "uart.h"

#define REGISTER(address) (*(volatile uint32_t *)(address))

#define UART0_TASKS_STARTTX REGISTER(0x40002008u)
#define UART0_EVENTS_TXDRDY REGISTER(0x4000211Cu)
#define UART0_ENABLE REGISTER(0x40002500u)
#define UART0_PSELTXD REGISTER(0x4000250Cu)
#define UART0_TXD REGISTER(0x4000251Cu)
#define UART0_BAUDRATE REGISTER(0x40002524u)
#define UART_ENABLE_ENABLED 4u
#define UART_BAUDRATE_115200 0x01D7E000u
#define TX_PIN 24u

void uart_init(void)
{
    UART0_PSELTXD = TX_PIN;
    UART0_BAUDRATE = UART_BAUDRATE_115200;
    UART0_ENABLE = UART_ENABLE_ENABLED;
    UART0_TASKS_STARTTX = 1;
}

void uart_putc(char c)
{
    UART0_EVENTS_TXDRDY = 0;
    UART0_TXD = (uint8_t)c;
    while (UART0_EVENTS_TXDRDY == 0) {
    }
}
