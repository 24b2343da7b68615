/* crc32c (Castagnoli) for paxos-core: hardware SSE4.2 path with a portable table fallback. */
#ifndef PAXOS_CORE_CRC32C_H
#define PAXOS_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Continue a crc32c over `len` bytes.  Start with crc = 0; the result of one call can be passed as `crc`
 * to the next to checksum data that arrives in pieces. */
uint32_t pxc_crc32c(uint32_t crc, const void *data, size_t len);

/* 1 when the SSE4.2 instruction is used, 0 for the portable table path. */
int pxc_crc32c_hardware(void);

/* The portable table path, whatever the CPU; the tests check both paths agree. */
uint32_t pxc_crc32c_portable(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
