/* The random-number half of the CPU fill (cpu_random.c), as cpu_fill.c calls it: Philox words, and the standard
 * values of the contract made from them. Two translation units so that the compiler builds them side by side
 * (depthinit.kernels.native compiles the sources of a kernel in parallel, then links them). */
#ifndef DEPTHINIT_CPU_RANDOM_H
#define DEPTHINIT_CPU_RANDOM_H

#include <stdint.h>
#include <string.h>

#define DEPTHINIT_INTERNAL __attribute__((visibility("hidden")))

enum { DIST_NORMAL = 0, DIST_UNIFORM = 1, DIST_TRUNC_NORMAL = 2, DIST_CONSTANT = 3 };

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Words of counters c0 .. c0 + n - 1, interleaved: W[4 i + j] = word j of counter c0 + i. */
DEPTHINIT_INTERNAL void philox(uint64_t c0, int64_t n, uint32_t stream, uint32_t k0, uint32_t k1,
                               uint32_t *restrict W);

/* V[e] (e < 4 n) = the standard value of element 4 c0 + e before the affine step: z for normal and
 * trunc_normal, u for uniform. */
DEPTHINIT_INTERNAL void standard(int dist, const uint32_t *restrict W, int64_t n, float cdf_lo, float sf_hi,
                                 float width, float *restrict V);

#endif
