/* Arm semihosting: file I/O, console output and exit through the debugger (here QEMU).
 *
 * Each call is a `bkpt 0xab` that the host services; nothing here needs a UART or libc.
 * QEMU must run with `-semihosting-config enable=on,target=native`. On a real board without
 * a debugger attached the first call faults, so replace these with the board's own I/O. */
#ifndef SEMIHOSTING_H
#define SEMIHOSTING_H

#include <stddef.h>
#include <stdint.h>

/* SYS_OPEN modes (the ISO C fopen modes, numbered by the semihosting spec). */
enum sh_open_mode {
    SH_MODE_READ_BINARY = 1,  /* "rb" */
    SH_MODE_WRITE_BINARY = 5, /* "wb" */
};

/* Returns a handle >= 0, or -1 if the host cannot open the file. */
int sh_open(const char *path, enum sh_open_mode mode);
int sh_close(int handle);
/* Length of an open file in bytes, or -1. */
long sh_flen(int handle);
/* Both return 0 when every byte was transferred (the spec returns the count left over). */
int sh_read(int handle, void *buffer, size_t size);
int sh_write(int handle, const void *buffer, size_t size);
/* Prints a NUL-terminated string on the host's console. */
void sh_print(const char *text);
/* Prints text, a decimal number, then more text: enough for a status line without printf. */
void sh_print_int(const char *before, long value, const char *after);
/* The same with the number as 0x followed by 8 hexadecimal digits. */
void sh_print_hex(const char *before, uint32_t value, const char *after);
/* Ends the program; the host process exits with this status. */
void sh_exit(int status) __attribute__((noreturn));

#endif
