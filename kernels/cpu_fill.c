/* Fill many CPU tensors in one call under the random-number contract: the CPU counterpart of kernels/fill.py.
 *
 * The torch reference is depthinit/rng.py; every function below mirrors one there, one IEEE operation at a time
 * (the library is built with -ffp-contract=off and without -ffast-math, so the compiler neither fuses nor
 * reorders them). Element i of the full logical tensor takes word i % 4 of Philox4x32-10 at counter
 * (i / 4 low, i / 4 high, stream, 0), key (seed low, seed high):
 *     unit(w)      = ((w >> 9) + 0.5) * 2^-23                                    (fp32, exact)
 *     normal       = Box-Muller on the word pairs (0, 1), (2, 3): r = sqrt(-2 log u0), t = fp32(2 pi) * u1,
 *                    z = r cos t (even element), r sin t (odd element)
 *     uniform      = low + (high - low) * u
 *     trunc_normal = z = Phi^-1(p) with p = cdf_lo + width * u computed together with 1 - p = sf_hi + width *
 *                    (1 - u) (each exact to fp32 rounding in its own tail), AS241 PPND7 on the smaller one
 *     then mean + std * z, clamped to [clamp_lo, clamp_hi] (target-dtype values: half-open uniform, closed
 *     trunc_normal), rounded once to the target dtype.
 * fp32 / fp16 / bf16 targets compute everything in fp32; fp64 targets compute z (or u) in fp32 and the
 * affine step and the clamp in fp64 with fp64 parameters.
 *
 * The Philox words and the standard values (z or u) come from cpu_random.c, with its own log, sin and cos
 * (Cephes single-precision algorithms, about 1 ulp; the same bits on every machine; torch's log / sin / cos,
 * the reference, are within 1 ulp too); this file does the affine step, the clamp, the rounding and the
 * threads. Philox runs 16 counters per instruction with AVX-512, 8 with AVX2, one otherwise (cpu_fill.py adds
 * the AVX-512 flags where the CPU has them); the element loops take the vector width the build allows.
 *
 * Each tensor is described by 8 int64 (ptr, dtype, dist, stream, outer, run, gstride, start) and 10 fp64
 * (mean, std, low, high, cdf_lo, sf_hi, width, clamp_lo, clamp_hi, unused): the tensor is `outer` runs of
 * `run` contiguous elements; run a starts at global index a * gstride + start. Work is cut into units of
 * about CHUNK elements (a segment of a long run, or several short runs); units are split evenly over the
 * threads. Every value depends only on (seed, stream, global index): never on the split or the thread count.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_parallel.h"
#include "cpu_random.h"

enum { NI = 8, NF = 10, MAXC = CHUNK / 4 + 2, MIN_UNITS_PER_THREAD = 4 };
enum { P_MEAN, P_STD, P_LOW, P_HIGH, P_CDF_LO, P_SF_HI, P_WIDTH, P_CLAMP_LO, P_CLAMP_HI };

/* --------------------------------------------------------------------------------- stores (one rounding) */

static inline uint16_t f32_to_f16(float f) { /* round to nearest even (F. Giesen's float_to_half_fast3_rtne) */
    uint32_t x = f2u(f), sign = (x >> 16) & 0x8000u;
    x &= 0x7FFFFFFFu;
    uint32_t sub = f2u(u2f(x) + 0.5f) - 0x3F000000u;               /* |f| < 2^-14: subnormal or zero */
    uint32_t nrm = (x + 0xC8000FFFu + ((x >> 13) & 1)) >> 13;     /* rebias 127 -> 15, round */
    uint32_t big = x > 0x7F800000u ? 0x7E00u : 0x7C00u;           /* NaN, or infinity on overflow */
    uint32_t h = x >= 0x47800000u ? big : (x < 0x38800000u ? sub : nrm);
    return (uint16_t)(h | sign);
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    uint32_t r = (x + 0x7FFFu + ((x >> 16) & 1)) >> 16;
    return (uint16_t)((x & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u : r);
}

typedef struct {
    int dist, dtype;
    float mean, std, low, width32, clo, chi;
    double mean64, std64, low64, wid64, clo64, chi64;
    float cdf_lo, sf_hi, width;
} Params;

static inline float affine(float m, float s, float v, float lo, float hi) {
    float x = m + s * v;
    x = x < lo ? lo : x;
    return x > hi ? hi : x;
}

/* Elements V[off .. off + len) (standard values) -> dst[0 .. len) of the tensor's dtype. */
static void store(const Params *P, const float *restrict V, int64_t off, int64_t len, void *dst) {
    const float *v = V + off;
    if (P->dtype == DT_F64) {
        double *d = (double *)dst;
        double m = P->dist == DIST_UNIFORM ? P->low64 : P->mean64, s = P->dist == DIST_UNIFORM ? P->wid64 : P->std64;
        double lo = P->clo64, hi = P->chi64;
        for (int64_t e = 0; e < len; e++) {
            double x = m + s * (double)v[e];
            x = x < lo ? lo : x;
            d[e] = x > hi ? hi : x;
        }
        return;
    }
    float m = P->dist == DIST_UNIFORM ? P->low : P->mean, s = P->dist == DIST_UNIFORM ? P->width32 : P->std;
    float lo = P->clo, hi = P->chi;
    if (P->dtype == DT_F32) {
        float *d = (float *)dst;
        for (int64_t e = 0; e < len; e++) d[e] = affine(m, s, v[e], lo, hi);
    } else if (P->dtype == DT_F16) {
        uint16_t *d = (uint16_t *)dst;
        for (int64_t e = 0; e < len; e++) d[e] = f32_to_f16(affine(m, s, v[e], lo, hi));
    } else {
        uint16_t *d = (uint16_t *)dst;
        for (int64_t e = 0; e < len; e++) d[e] = f32_to_bf16(affine(m, s, v[e], lo, hi));
    }
}

static void store_constant(const Params *P, int64_t len, void *dst) {
    if (P->dtype == DT_F64) {
        for (int64_t e = 0; e < len; e++) ((double *)dst)[e] = P->mean64;
    } else if (P->dtype == DT_F32) {
        for (int64_t e = 0; e < len; e++) ((float *)dst)[e] = P->mean;
    } else {
        uint16_t h = P->dtype == DT_F16 ? f32_to_f16(P->mean) : f32_to_bf16(P->mean);
        for (int64_t e = 0; e < len; e++) ((uint16_t *)dst)[e] = h;
    }
}

/* ------------------------------------------------------------------------------------------- work units */

static void params_of(const int64_t *d, const double *f, Params *P) {
    P->dist = (int)d[2], P->dtype = (int)d[1];
    P->mean64 = f[P_MEAN], P->std64 = f[P_STD], P->low64 = f[P_LOW], P->wid64 = f[P_HIGH] - f[P_LOW];
    P->clo64 = f[P_CLAMP_LO], P->chi64 = f[P_CLAMP_HI];
    P->mean = (float)f[P_MEAN], P->std = (float)f[P_STD], P->low = (float)f[P_LOW];
    P->width32 = (float)f[P_HIGH] - (float)f[P_LOW]; /* the reference's fp32 high - low */
    P->clo = (float)f[P_CLAMP_LO], P->chi = (float)f[P_CLAMP_HI];
    P->cdf_lo = (float)f[P_CDF_LO], P->sf_hi = (float)f[P_SF_HI], P->width = (float)f[P_WIDTH];
}

typedef struct {
    const int64_t *idesc;
    const double *fdesc;
    uint32_t k0, k1;
} Job;

/* Fill `len` elements starting at global index g0 into dst. */
static void fill_segment(const Params *P, uint32_t stream, uint32_t k0, uint32_t k1, int64_t g0, int64_t len,
                         void *dst, uint32_t *W, float *V) {
    if (P->dist == DIST_CONSTANT) {
        store_constant(P, len, dst);
        return;
    }
    while (len > 0) {
        int64_t c0 = g0 >> 2, off = g0 - 4 * c0, take = len < CHUNK - off ? len : CHUNK - off;
        int64_t n = (off + take + 3) >> 2;
        philox((uint64_t)c0, n, stream, k0, k1, W);
        standard(P->dist, W, n, P->cdf_lo, P->sf_hi, P->width, V);
        store(P, V, off, take, dst);
        g0 += take, len -= take;
        dst = (char *)dst + take * ELEMENT_SIZE[P->dtype];
    }
}

/* Fill units [lo, hi) (a range_fn of cpu_parallel.h). */
static int fill_units(void *ctx, const int64_t *first, int64_t lo, int64_t hi, int64_t t) {
    const Job *job = (const Job *)ctx;
    uint32_t *W = malloc(sizeof(uint32_t) * 4 * MAXC);
    float *V = malloc(sizeof(float) * 4 * MAXC);
    if (!W || !V) {
        free(W), free(V);
        return 1;
    }
    Params P = {0};
    int64_t have = -1;
    for (int64_t u = lo; u < hi; u++) {
        while (u >= first[t + 1]) t++;
        const int64_t *d = job->idesc + NI * t;
        if (have != t) params_of(d, job->fdesc + NF * t, &P), have = t;
        int64_t outer = d[4], run = d[5], gstride = d[6], start = d[7];
        Unit w = unit_at(u - first[t], outer, run);
        char *base = (char *)(intptr_t)d[0];
        for (int64_t a = w.row; a < w.row + w.n_rows; a++)
            fill_segment(&P, (uint32_t)d[3], job->k0, job->k1, a * gstride + start + w.col, w.n_cols,
                         base + (a * run + w.col) * ELEMENT_SIZE[P.dtype], W, V);
    }
    free(W), free(V);
    return 0;
}

/* Fill the n described tensors with up to `threads` threads. Returns 0, or 1 when memory ran out. */
int depthinit_fill(int64_t n, const int64_t *idesc, const double *fdesc, uint64_t seed, int threads) {
    int64_t *first = malloc(sizeof(int64_t) * (n + 1));
    if (!first) return 1;
    first[0] = 0;
    for (int64_t t = 0; t < n; t++) {
        first[t + 1] = first[t] + unit_count(idesc[NI * t + 4], idesc[NI * t + 5]); /* outer, run */
    }
    Job job = {idesc, fdesc, (uint32_t)seed, (uint32_t)(seed >> 32)};
    int failed = run_units(fill_units, &job, first, n, threads, MIN_UNITS_PER_THREAD);
    free(first);
    return failed;
}
