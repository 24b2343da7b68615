/* crc32c (Castagnoli polynomial, reflected 0x82F63B78).
 *
 * Two implementations of the same function:
 *   - slicing-by-8 tables, portable;
 *   - the SSE4.2 crc32 instruction on x86-64, chosen at run time when the CPU has it.
 * The tests compare both against known vectors. */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static int table_ready = 0;

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int t = 1; t < 8; t++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[t][n] = c;
        }
    }
    table_ready = 1;
}

static uint32_t crc32c_table(uint32_t crc, const unsigned char *p, size_t len) {
    if (!table_ready) build_table();
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        uint32_t lo = (uint32_t)word ^ crc;
        uint32_t hi = (uint32_t)(word >> 32);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_HW_PATH 1

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p,
                                                                size_t len) {
    uint64_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        len -= 8;
    }
    while (len--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#else
#define HAVE_HW_PATH 0
#endif

static int hw_checked = 0;
static int hw_available = 0;

int pxc_crc32c_hardware(void) {
    if (!hw_checked) {
#if HAVE_HW_PATH
        __builtin_cpu_init();
        hw_available = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
        hw_checked = 1;
    }
    return hw_available;
}

uint32_t pxc_crc32c(uint32_t crc, const void *data, size_t len) {
#if HAVE_HW_PATH
    if (pxc_crc32c_hardware()) return crc32c_sse42(crc, (const unsigned char *)data, len);
#endif
    return crc32c_table(crc, (const unsigned char *)data, len);
}

/* Exposed for the tests: force the portable path. */
uint32_t pxc_crc32c_portable(uint32_t crc, const void *data, size_t len) {
    return crc32c_table(crc, (const unsigned char *)data, len);
}
