/* STM32F405RG: USART1 on PA9 (TX), from the reset clock (the 16 MHz HSI).
 * Addresses and bits from ST's reference manual RM0090: the memory map (section 2.3), RCC
 * (section 7.3: AHB1ENR, APB2ENR), GPIO (section 8.4: MODER, AFRH; PA9's alternate function 7
 * is USART1_TX, datasheet DS8626 Table 9) and USART (section 30.6: SR, DR, BRR, CR1). */
#include <stdint.h>

#include "uart.h"

#define REGISTER(address) (*(volatile uint32_t *)(address))

#define RCC_AHB1ENR REGISTER(0x40023830u)
#define RCC_APB2ENR REGISTER(0x40023844u)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB2ENR_USART1EN (1u << 4)

#define GPIOA_MODER REGISTER(0x40020000u)
#define GPIOA_AFRH REGISTER(0x40020024u)
#define PA9_MODER_SHIFT 18u /* two bits per pin */
#define MODER_ALTERNATE 2u
#define PA9_AFRH_SHIFT 4u  /* four bits per pin, pins 8 to 15 */
#define AF7_USART1 7u

#define USART1_SR REGISTER(0x40011000u)
#define USART1_DR REGISTER(0x40011004u)
#define USART1_BRR REGISTER(0x40011008u)
#define USART1_CR1 REGISTER(0x4001100Cu)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_UE (1u << 13)
#define USART_CR1_TE (1u << 3)

/* 115200 baud from the 16 MHz HSI (APB2 undivided at reset), oversampling by 16:
 * USARTDIV = 16 MHz / (16 x 115200) = 8.68: mantissa 8, fraction 0.68 x 16 = 11. */
#define BRR_115200_AT_16MHZ ((8u << 4) | 11u)

void uart_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    (void)RCC_APB2ENR; /* read back: the clock is on before the peripheral is touched */
    GPIOA_MODER = (GPIOA_MODER & ~(3u << PA9_MODER_SHIFT)) | (MODER_ALTERNATE << PA9_MODER_SHIFT);
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << PA9_AFRH_SHIFT)) | (AF7_USART1 << PA9_AFRH_SHIFT);
    USART1_BRR = BRR_115200_AT_16MHZ;
    USART1_CR1 = USART_CR1_UE | USART_CR1_TE;
}

void uart_putc(char c)
{
    while ((USART1_SR & USART_SR_TXE) == 0) {
    }
    USART1_DR = (uint8_t)c;
}
