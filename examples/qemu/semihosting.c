/* Arm semihosting calls for Cortex-M: operation number in r0, argument block address in r1. */
#include "semihosting.h"

enum sh_operation {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0C,
    SYS_EXIT_EXTENDED = 0x20,
};

/* SYS_EXIT_EXTENDED reason for a normal program end; its subcode is the exit status. */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int sh_call(enum sh_operation operation, const void *argument)
{
    register int r0 __asm("r0") = (int)operation;
    register const void *r1 __asm("r1") = argument;
    /* The "memory" clobber makes the compiler store buffers before the host reads them
     * and reload them after the host writes them. */
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

int sh_open(const char *path, enum sh_open_mode mode)
{
    size_t length = 0;
    while (path[length] != '\0') {
        length++;
    }
    const uintptr_t arguments[3] = {(uintptr_t)path, (uintptr_t)mode, length};
    return sh_call(SYS_OPEN, arguments);
}

int sh_close(int handle)
{
    const uintptr_t arguments[1] = {(uintptr_t)handle};
    return sh_call(SYS_CLOSE, arguments);
}

long sh_flen(int handle)
{
    const uintptr_t arguments[1] = {(uintptr_t)handle};
    return sh_call(SYS_FLEN, arguments);
}

int sh_read(int handle, void *buffer, size_t size)
{
    const uintptr_t arguments[3] = {(uintptr_t)handle, (uintptr_t)buffer, size};
    return sh_call(SYS_READ, arguments);
}

int sh_write(int handle, const void *buffer, size_t size)
{
    const uintptr_t arguments[3] = {(uintptr_t)handle, (uintptr_t)buffer, size};
    return sh_call(SYS_WRITE, arguments);
}

void sh_print(const char *text)
{
    sh_call(SYS_WRITE0, text);
}

void sh_print_int(const char *before, long value, const char *after)
{
    char digits[24];
    char *cursor = &digits[sizeof digits - 1];
    unsigned long magnitude = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;
    *cursor = '\0';
    do {
        *--cursor = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    if (value < 0) {
        *--cursor = '-';
    }
    sh_print(before);
    sh_print(cursor);
    sh_print(after);
}

void sh_print_hex(const char *before, uint32_t value, const char *after)
{
    static const char hex_digits[16] = "0123456789abcdef";
    char text[11] = "0x";
    for (int digit = 0; digit < 8; digit++) {
        text[2 + digit] = hex_digits[(value >> (28 - 4 * digit)) & 0xFu];
    }
    text[10] = '\0';
    sh_print(before);
    sh_print(text);
    sh_print(after);
}

void sh_exit(int status)
{
    const uintptr_t arguments[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)status};
    sh_call(SYS_EXIT_EXTENDED, arguments);
    for (;;) {
        /* Unreachable when a host is attached: SYS_EXIT_EXTENDED does not return. */
    }
}
