/* The checksummed values of the cross-process tests: BODY "#" HEX8, HEX8 = kv_hash(BODY) in
 * lower-case hex. A torn read mixes two values and fails the check. The Bun tests verify the same
 * format (test/helpers/kvtool.ts). */
#ifndef KV_TEST_CHECKSUM_H
#define KV_TEST_CHECKSUM_H

#include "shared_memory_kv.h"

#include <stdio.h>
#include <string.h>

static inline size_t checksummed(char *out, size_t cap, const char *body)
{
    return (size_t)snprintf(out, cap, "%s#%08x", body, kv_hash(body, strlen(body)));
}

static inline int checksum_ok(const char *v, size_t len)
{
    if (len < 9 || v[len - 9] != '#')
        return 0;
    char want[9];
    snprintf(want, sizeof want, "%08x", kv_hash(v, len - 9));
    return memcmp(want, v + len - 8, 8) == 0;
}

#endif
