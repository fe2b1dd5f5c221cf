/* The random numbers of the CPU fill (cpu_fill.c has the contract): Philox4x32-10 words, 16 counters per
 * instruction with AVX-512, 8 with AVX2, one otherwise; and the standard values made from them (Box-Muller
 * normals, unit uniforms, AS241 truncated normals) with this file's own log, sin and cos (Cephes
 * single-precision algorithms, branch-free so that the element loops vectorize; about 1 ulp, the same bits on
 * every machine). Every function mirrors one of depthinit/rng.py, one IEEE operation at a time.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu_random.h"

/* ---------------------------------------------------------------------------------------- Philox4x32-10 */

/* Philox of one counter (the scalar path, and the tail of the vector one). */
static inline void philox1(uint64_t c, uint32_t stream, uint32_t k0, uint32_t k1, uint32_t *restrict out) {
    uint32_t x0 = (uint32_t)c, x1 = (uint32_t)(c >> 32), x2 = stream, x3 = 0, a = k0, b = k1;
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)x0 * 0xD2511F53u, p1 = (uint64_t)x2 * 0xCD9E8D57u;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ a, y2 = (uint32_t)(p0 >> 32) ^ x3 ^ b;
        x1 = (uint32_t)p1, x3 = (uint32_t)p0, x0 = y0, x2 = y2;
        a += 0x9E3779B9u, b += 0xBB67AE85u;
    }
    out[0] = x0, out[1] = x1, out[2] = x2, out[3] = x3;
}

/* The vector Philox, at the widest width of the build: LANES counters per vector, G independent groups of
 * vectors (to hide the latency of the multiplies), BLOCK = G * LANES counters per call. VI(op) names the
 * width's _mm*_op intrinsic; V_ODD(a, b) takes the even lanes of a and the odd lanes of b; store_lanes writes
 * r_0 .. r_3, whose 128-bit lane k holds the words of counter 4 k + j in r_j, counter by counter. */
#if defined(__AVX512F__)
#define VECTOR_PHILOX 1
enum { LANES = 16 };
typedef __m512i vec;
#define VI(op) _mm512_##op
#define V_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define V_XOR _mm512_xor_si512
#define V_ODD(a, b) _mm512_mask_blend_epi32(0xAAAA, a, b)
static inline void store_lanes(vec r0, vec r1, vec r2, vec r3, uint32_t *o) { /* 4 x 4 transpose of lanes */
    vec u0 = _mm512_shuffle_i64x2(r0, r1, 0x44), u1 = _mm512_shuffle_i64x2(r2, r3, 0x44);
    vec u2 = _mm512_shuffle_i64x2(r0, r1, 0xEE), u3 = _mm512_shuffle_i64x2(r2, r3, 0xEE);
    _mm512_storeu_si512((void *)o, _mm512_shuffle_i64x2(u0, u1, 0x88));
    _mm512_storeu_si512((void *)(o + 16), _mm512_shuffle_i64x2(u0, u1, 0xDD));
    _mm512_storeu_si512((void *)(o + 32), _mm512_shuffle_i64x2(u2, u3, 0x88));
    _mm512_storeu_si512((void *)(o + 48), _mm512_shuffle_i64x2(u2, u3, 0xDD));
}
#elif defined(__AVX2__)
#define VECTOR_PHILOX 1
enum { LANES = 8 };
typedef __m256i vec;
#define VI(op) _mm256_##op
#define V_LOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define V_XOR _mm256_xor_si256
#define V_ODD(a, b) _mm256_blend_epi32(a, b, 0xAA)
static inline void store_lanes(vec r0, vec r1, vec r2, vec r3, uint32_t *o) {
    _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(r0, r1, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 8), _mm256_permute2x128_si256(r2, r3, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 16), _mm256_permute2x128_si256(r0, r1, 0x31));
    _mm256_storeu_si256((__m256i *)(o + 24), _mm256_permute2x128_si256(r2, r3, 0x31));
}
#endif

#if defined(VECTOR_PHILOX)
#define V_SET1(x) VI(set1_epi32)((int)(x))

/* High and low words of x * m (32 x 32 -> 64-bit products of the even, then the odd lanes). */
static inline void mulhilo(vec x, vec m, vec *hi, vec *lo) {
    vec pe = VI(mul_epu32)(x, m), po = VI(mul_epu32)(VI(srli_epi64)(x, 32), m);
    *lo = V_ODD(pe, VI(slli_epi64)(po, 32));
    *hi = V_ODD(VI(srli_epi64)(pe, 32), po);
}

/* Word j of LANES counters in x_j -> o[4 i .. 4 i + 4) = the words of counter i. */
static inline void store4(vec x0, vec x1, vec x2, vec x3, uint32_t *o) {
    vec t0 = VI(unpacklo_epi32)(x0, x1), t1 = VI(unpackhi_epi32)(x0, x1);
    vec t2 = VI(unpacklo_epi32)(x2, x3), t3 = VI(unpackhi_epi32)(x2, x3);
    store_lanes(VI(unpacklo_epi64)(t0, t2), VI(unpackhi_epi64)(t0, t2), VI(unpacklo_epi64)(t1, t3),
                VI(unpackhi_epi64)(t1, t3), o);
}

enum { G = 4, BLOCK = G * LANES };
/* Philox of the BLOCK counters c .. c + BLOCK - 1, written interleaved to out[0 .. 4 BLOCK). */
static inline void philox_block(uint64_t c, uint32_t stream, uint32_t k0, uint32_t k1, uint32_t *restrict out) {
    uint32_t lo[BLOCK], hi[BLOCK];
    for (int i = 0; i < BLOCK; i++) lo[i] = (uint32_t)(c + i), hi[i] = (uint32_t)((c + i) >> 32);
    vec x0[G], x1[G], x2[G], x3[G];
    for (int g = 0; g < G; g++) {
        x0[g] = V_LOAD(lo + LANES * g), x1[g] = V_LOAD(hi + LANES * g);
        x2[g] = V_SET1(stream), x3[g] = V_SET1(0);
    }
    vec a = V_SET1(k0), b = V_SET1(k1);
    const vec m0 = V_SET1(0xD2511F53u), m1 = V_SET1(0xCD9E8D57u);
    const vec w0 = V_SET1(0x9E3779B9u), w1 = V_SET1(0xBB67AE85u);
    for (int r = 0; r < 10; r++) {
        for (int g = 0; g < G; g++) {
            vec h0, l0, h1, l1;
            mulhilo(x0[g], m0, &h0, &l0);
            mulhilo(x2[g], m1, &h1, &l1);
            x0[g] = V_XOR(V_XOR(h1, x1[g]), a);
            x2[g] = V_XOR(V_XOR(h0, x3[g]), b);
            x1[g] = l1, x3[g] = l0;
        }
        a = VI(add_epi32)(a, w0), b = VI(add_epi32)(b, w1);
    }
    for (int g = 0; g < G; g++) store4(x0[g], x1[g], x2[g], x3[g], out + 4 * LANES * g);
}
#endif

void philox(uint64_t c0, int64_t n, uint32_t stream, uint32_t k0, uint32_t k1, uint32_t *restrict W) {
    int64_t i = 0;
#if defined(VECTOR_PHILOX)
    for (; i + BLOCK <= n; i += BLOCK) philox_block(c0 + (uint64_t)i, stream, k0, k1, W + 4 * i);
    if (n - i >= LANES) { /* a tail of at least one vector: one block into a buffer (words depend on c alone) */
        uint32_t tail[4 * BLOCK];
        philox_block(c0 + (uint64_t)i, stream, k0, k1, tail);
        memcpy(W + 4 * i, tail, sizeof(uint32_t) * 4 * (size_t)(n - i));
        i = n;
    }
#endif
    for (; i < n; i++) philox1(c0 + (uint64_t)i, stream, k0, k1, W + 4 * i);
}

static inline float unit(uint32_t w) { return ((float)(w >> 9) + 0.5f) * 1.1920928955078125e-07f; }

/* ------------------------------------------------------------------------------ fp32 log, sin, cos (Cephes) */

/* log of a positive normal float (here u in [2^-24, 1)). */
static inline float log_f32(float v) {
    uint32_t bits = f2u(v);
    int e = (int)(bits >> 23) - 126;
    float x = u2f((bits & 0x007FFFFFu) | 0x3F000000u); /* [0.5, 1) */
    int small = x < 0.70710678118654752440f;
    e -= small;
    x = small ? (x + x) - 1.0f : x - 1.0f; /* exact (Sterbenz) */
    float z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    float fe = (float)e;
    y = y + -2.12194440e-4f * fe;
    y = y + -0.5f * z;
    z = x + y;
    return z + 0.693359375f * fe;
}

/* sin and cos of t in [0, 8]: t = j pi/4 + r with j even, |r| <= pi/4 (3-part pi/4, exact products). */
static inline void sincos_f32(float t, float *s, float *c) {
    int j = (int)(t * 1.27323954473516f);
    j += j & 1;
    float y = (float)j;
    float r = ((t - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
    float z = r * r;
    float ps = -1.9515295891e-4f;
    ps = ps * z + 8.3321608736e-3f;
    ps = ps * z - 1.6666654611e-1f;
    ps = ps * z * r + r;
    float pc = 2.443315711809948e-5f;
    pc = pc * z - 1.388731625493765e-3f;
    pc = pc * z + 4.166664568298827e-2f;
    pc = pc * z * z;
    pc = pc - 0.5f * z;
    pc = pc + 1.0f;
    int q = (j >> 1) & 3; /* t = q pi/2 + r */
    float sv = (q & 1) ? pc : ps, cv = (q & 1) ? ps : pc;
    *s = (q & 2) ? -sv : sv;
    *c = ((q + 1) & 2) ? -cv : cv;
}

/* ------------------------------------------------------------------- inverse normal CDF (AS241 PPND7) */

/* Phi^-1 of the smaller tail probability s in (0, 0.5], negated: a value >= 0 (Wichura, AS241, 1988). */
static inline float ppnd7_upper(float s) {
    float q = 0.5f - s, r = 0.180625f - q * q;
    float na = 5.9109374720e+1f;
    na = na * r + 1.5929113202e+2f;
    na = na * r + 5.0434271938e+1f;
    na = na * r + 3.3871327179e+0f;
    float da = 6.7187563600e+1f;
    da = da * r + 7.8757757664e+1f;
    da = da * r + 1.7895169469e+1f;
    da = da * r + 1.0f;
    float central = q * na / da;
    s = s > 1.17549435e-38f ? s : 1.17549435e-38f;
    float t = sqrtf(-log_f32(s));
    float tc = t - 1.6f, te = t - 5.0f;
    float nc = 1.7023821103e-1f;
    nc = nc * tc + 1.3067284816e+0f;
    nc = nc * tc + 2.7568153900e+0f;
    nc = nc * tc + 1.4234372777e+0f;
    float dc = 1.2021132975e-1f;
    dc = dc * tc + 7.3700164250e-1f;
    dc = dc * tc + 1.0f;
    float ne = 1.7337203997e-2f;
    ne = ne * te + 4.2868294337e-1f;
    ne = ne * te + 3.0812263860e+0f;
    ne = ne * te + 6.6579051150e+0f;
    float de = 1.2258202635e-2f;
    de = de * te + 2.4197894225e-1f;
    de = de * te + 1.0f;
    float tail = t <= 5.0f ? nc / dc : ne / de;
    return q <= 0.425f ? central : tail;
}

/* ------------------------------------------------------------------------------------ standard values */

void standard(int dist, const uint32_t *restrict W, int64_t n, float cdf_lo, float sf_hi, float width,
                     float *restrict V) {
    if (dist == DIST_NORMAL) {
        for (int64_t m = 0; m < 2 * n; m++) {
            float r = sqrtf(-2.0f * log_f32(unit(W[2 * m]))), t = 6.283185307179586f * unit(W[2 * m + 1]), s, c;
            sincos_f32(t, &s, &c);
            V[2 * m] = r * c, V[2 * m + 1] = r * s;
        }
    } else if (dist == DIST_UNIFORM) {
        for (int64_t e = 0; e < 4 * n; e++) V[e] = unit(W[e]);
    } else {
        for (int64_t e = 0; e < 4 * n; e++) {
            float u = unit(W[e]), p = cdf_lo + width * u, q = sf_hi + width * (1.0f - u);
            float lower = p <= q, z = ppnd7_upper(lower ? p : q);
            V[e] = lower ? -z : z;
        }
    }
}

/* The standard values of counters c0 .. c0 + n - 1 (tests: the kernel's transforms against the reference). */
int depthinit_fill_standard(int dist, uint64_t c0, int64_t n, uint32_t stream, uint64_t seed, float cdf_lo,
                            float sf_hi, float width, float *out) {
    uint32_t *W = malloc(sizeof(uint32_t) * 4 * (n > 0 ? n : 1));
    if (!W) return 1;
    philox(c0, n, stream, (uint32_t)seed, (uint32_t)(seed >> 32), W);
    standard(dist, W, n, cdf_lo, sf_hi, width, out);
    free(W);
    return 0;
}
