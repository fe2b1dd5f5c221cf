/* Per-tensor statistics of many CPU tensors in one call: the CPU counterpart of kernels/stats.py.
 *
 * The statistics contract of depthinit.stats (DESIGN.md), for each tensor one fp64 row
 *     count, mean, m2, sumsq, min, max, absmax, nonfinite, zeros
 * over the finite elements. Every tensor is described by five int64:
 *     data pointer, dtype code (DT_*), rows, cols, row stride (in elements)
 * element (r, c) at ptr + r * row_stride + c (a contiguous tensor is one row; the q / k / v thirds
 * of a fused projection's output are rows with a stride).
 *
 * Work is cut into chunks of about CHUNK elements: a segment of one long row, or several whole short
 * rows. A chunk is read once, in one pass with fp64 accumulators:
 *     s1 = sum(x - k), s2 = sum((x - k)^2) about a shift k (the mean of its first 8 values),
 *     min, max, zeros                         -> mean = k + s1 / n, m2 = s2 - s1^2 / n
 * The subtraction amplifies the rounding error of s2 by s2 / m2, at most 64 while s1^2 / n <= FAR s2
 * (the shift within 7.9 standard deviations of the mean): 64 * 4096 * 2^-53 = 3e-11 relative in the
 * worst case. Beyond that, a second pass about the mean while the chunk is still in L1 (the corrected
 * two-pass algorithm). A chunk whose sums are not finite holds a NaN or an infinity and is measured
 * again element by element with masks. Constant data gives m2 = 0 and mean = the value, exactly.
 * Chunks are merged per tensor, in chunk order, with Chan et al.'s formula in fp64, so the result
 * does not depend on the number of threads.
 *
 * The fast pass uses AVX2 intrinsics where the compiler targets them (min / max / zero tests on 8
 * floats, sums on 2 x 4 doubles); otherwise plain loops (correct everywhere, slower). Nothing is reassociated behind the code's
 * back (no -ffast-math): NaN and infinity keep their IEEE meaning.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu_parallel.h"

enum { F_COUNT, F_MEAN, F_M2, F_SUMSQ, F_MIN, F_MAX, F_ABSMAX, F_NONFINITE, F_ZEROS, N_FIELDS };
enum { DESC = 5, MIN_CHUNKS_PER_THREAD = 16 };
static const double FAR = 63.0 / 64.0;
/* Bytes ahead of its loads that a vector pass asks the L2 cache for (_MM_HINT_T1): the sums cost about as much as
 * the reads, and the hardware prefetcher alone does not run far enough ahead for the two to overlap. Into L2, 8 KB
 * ahead: about 0.85x the throughput of torch's x.sum() on 400 MB with 2 threads on a Xeon, against 0.61-0.67x
 * into L1 at 2 KB and 0.58x with none (bench/bench_stats_cpu.py's stack). A prefetch never faults: past the end of
 * a chunk it fetches the next chunk's lines (a tensor's chunks are contiguous), past the end of a small tensor
 * lines that may go unused. */
enum { PREFETCH = 8192 };

typedef struct {
    double n, mean, m2, mn, mx, nonfinite, zeros;
} Part;

typedef struct { /* a chunk: nrows rows of len elements, row stride in elements */
    const void *p;
    int64_t nrows, len, stride;
} Block;

static inline double load_f32(const void *p, int64_t i) { return (double)((const float *)p)[i]; }
static inline double load_f64(const void *p, int64_t i) { return ((const double *)p)[i]; }

static inline double load_bf16(const void *p, int64_t i) {
    uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

static inline double load_f16(const void *p, int64_t i) {
    uint32_t h = ((const uint16_t *)p)[i];
    uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) { /* zero or subnormal: m * 2^-24 */
        double v = (double)m * 5.9604644775390625e-08;
        return sign ? -v : v;
    }
    u = sign | (e == 31 ? (0xffu << 23) | (m << 13) : ((e + 112u) << 23) | (m << 13));
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

/* Running sums of one chunk's fast pass. */
typedef struct {
    double s, q, mn, mx, z;
} Sums;

/* One value into the sums about shift k (the scalar tails of the vector loops). */
static inline void add_one(Sums *t, double v, double k) {
    double d = v - k;
    t->s += d, t->q += d * d, t->z += v == 0;
    t->mn = v < t->mn ? v : t->mn;
    t->mx = v > t->mx ? v : t->mx;
}

/* Fast pass, plain loops (any dtype): eight independent lanes per accumulator. */
#define DEFINE_PASS_LANES(NAME, LOAD)                                                                    \
    static void NAME(const Block *b, double k, double f0, Sums *out) {                                              \
        *out = (Sums){0, 0, f0, f0, 0};                                                                  \
        double s[8] = {0}, q[8] = {0}, mn[8], mx[8], z[8] = {0};                                         \
        for (int j = 0; j < 8; j++) mn[j] = f0, mx[j] = f0;                                              \
        for (int64_t r = 0; r < b->nrows; r++) {                                                         \
            const int64_t o = r * b->stride, body = b->len - b->len % 8;                                 \
            int64_t i;                                                                                   \
            for (i = 0; i < body; i += 8)                                                                \
                for (int j = 0; j < 8; j++) {                                                            \
                    double v = LOAD(b->p, o + i + j), d = v - k;                                         \
                    s[j] += d, q[j] += d * d;                                                            \
                    mn[j] = v < mn[j] ? v : mn[j];                                                       \
                    mx[j] = v > mx[j] ? v : mx[j];                                                       \
                    z[j] += v == 0;                                                                      \
                }                                                                                        \
            for (; i < b->len; i++) add_one(out, LOAD(b->p, o + i), k);                                  \
        }                                                                                                \
        for (int j = 0; j < 8; j++) {                                                                    \
            out->s += s[j], out->q += q[j], out->z += z[j];                                              \
            out->mn = fmin(out->mn, mn[j]), out->mx = fmax(out->mx, mx[j]);                              \
        }                                                                                                \
    }

#if defined(__AVX2__)
static inline __m256 load8_f32(const void *p, int64_t i) { return _mm256_loadu_ps((const float *)p + i); }
static inline __m256 load8_bf16(const void *p, int64_t i) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#if defined(__F16C__)
static inline __m256 load8_f16(const void *p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}
#define HAVE_LOAD8_F16 1
#endif

static inline double hsum4(__m256d a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* Fast pass, AVX2, 16- and 32-bit floats: extremes and zero tests on 8 floats (exact), sums on
 * 2 x 4 doubles. A NaN makes the sums NaN (the chunk goes to the slow path), so min / max semantics
 * with NaN do not matter here. */
#define DEFINE_PASS_AVX2(NAME, LOAD, LOAD8, ELT)                                                         \
    static void NAME(const Block *b, double k, double f0, Sums *out) {                                              \
        const __m256d K = _mm256_set1_pd(k);                                                             \
        __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;                                     \
        __m256 mn = _mm256_set1_ps((float)f0), mx = mn, zero = _mm256_setzero_ps(); /* f0: an element */ \
        __m256i z = _mm256_setzero_si256();                                                              \
        Sums t = {0, 0, f0, f0, 0};                                                                      \
        for (int64_t r = 0; r < b->nrows; r++) {                                                         \
            const int64_t o = r * b->stride, body = b->len - b->len % 8;                                 \
            int64_t i;                                                                                   \
            for (i = 0; i < body; i += 8) {                                                              \
                if (i % (64 / sizeof(ELT)) == 0) /* once per 64-byte line */                              \
                    _mm_prefetch((const char *)((const ELT *)b->p + o + i) + PREFETCH, _MM_HINT_T1);     \
                __m256 x = LOAD8(b->p, o + i);                                                           \
                mn = _mm256_min_ps(x, mn), mx = _mm256_max_ps(x, mx);                                    \
                z = _mm256_sub_epi32(z, _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ)));       \
                __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), K);               \
                __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), K);             \
                s0 = _mm256_add_pd(s0, d0), s1 = _mm256_add_pd(s1, d1);                                  \
                q0 = _mm256_fmadd_pd(d0, d0, q0), q1 = _mm256_fmadd_pd(d1, d1, q1);                      \
            }                                                                                            \
            for (; i < b->len; i++) add_one(&t, LOAD(b->p, o + i), k);                                   \
        }                                                                                                \
        float mns[8], mxs[8];                                                                            \
        int32_t zs[8];                                                                                   \
        _mm256_storeu_ps(mns, mn), _mm256_storeu_ps(mxs, mx);                                            \
        _mm256_storeu_si256((__m256i *)zs, z);                                                           \
        for (int j = 0; j < 8; j++) t.mn = fmin(t.mn, (double)mns[j]), t.mx = fmax(t.mx, (double)mxs[j]), t.z += zs[j]; \
        t.s += hsum4(_mm256_add_pd(s0, s1)), t.q += hsum4(_mm256_add_pd(q0, q1));                       \
        *out = t;                                                                                        \
    }

#if defined(__AVX512F__)
static inline __m512 load16_f32(const void *p, int64_t i) { return _mm512_loadu_ps((const float *)p + i); }
static inline __m512 load16_bf16(const void *p, int64_t i) {
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline __m512 load16_f16(const void *p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
}
/* The eight floats from element i + 8 * h of a 16-float vector x loaded from element i, for the conversion to
 * fp64: fp32 reads them again from memory (the load port is idle; it saves a shuffle on the busy vector ports,
 * about 10 % of the pass), 16-bit floats take them from x. */
static inline __m256 half8_f32(const void *p, int64_t i, __m512 x, int h) {
    (void)x;
    return _mm256_loadu_ps((const float *)p + i + 8 * h);
}
static inline __m256 half8_of(const void *p, int64_t i, __m512 x, int h) {
    (void)p, (void)i;
    return h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)) : _mm512_castps512_ps256(x);
}

/* Fast pass, AVX-512, 16- and 32-bit floats: extremes and zero tests on 16 floats (exact), sums on 2 x 8
 * doubles. As the AVX2 pass, a NaN makes the sums NaN and the chunk goes to the slow path. */
#define DEFINE_PASS_AVX512(NAME, LOAD, LOAD16, HALF8, ELT)                                               \
    static void NAME(const Block *b, double k, double f0, Sums *out) {                                   \
        const __m512d K = _mm512_set1_pd(k);                                                             \
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;                                     \
        __m512 mn = _mm512_set1_ps((float)f0), mx = mn, zero = _mm512_setzero_ps(); /* f0: an element */ \
        __m512i z = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);                                  \
        Sums t = {0, 0, f0, f0, 0};                                                                      \
        for (int64_t r = 0; r < b->nrows; r++) {                                                         \
            const int64_t o = r * b->stride, body = b->len - b->len % 16;                                \
            int64_t i;                                                                                   \
            for (i = 0; i < body; i += 16) {                                                             \
                _mm_prefetch((const char *)((const ELT *)b->p + o + i) + PREFETCH, _MM_HINT_T1);         \
                __m512 x = LOAD16(b->p, o + i);                                                          \
                mn = _mm512_min_ps(x, mn), mx = _mm512_max_ps(x, mx);                                    \
                z = _mm512_mask_add_epi32(z, _mm512_cmp_ps_mask(x, zero, _CMP_EQ_OQ), z, one);           \
                __m256 lo = HALF8(b->p, o + i, x, 0), hi = HALF8(b->p, o + i, x, 1);                      \
                __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(lo), K), d1 = _mm512_sub_pd(_mm512_cvtps_pd(hi), K); \
                s0 = _mm512_add_pd(s0, d0), s1 = _mm512_add_pd(s1, d1);                                  \
                q0 = _mm512_fmadd_pd(d0, d0, q0), q1 = _mm512_fmadd_pd(d1, d1, q1);                      \
            }                                                                                            \
            for (; i < b->len; i++) add_one(&t, LOAD(b->p, o + i), k);                                   \
        }                                                                                                \
        t.mn = fmin(t.mn, (double)_mm512_reduce_min_ps(mn)), t.mx = fmax(t.mx, (double)_mm512_reduce_max_ps(mx)); \
        t.z += (double)_mm512_reduce_add_epi32(z);                                                       \
        t.s += _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)), t.q += _mm512_reduce_add_pd(_mm512_add_pd(q0, q1)); \
        *out = t;                                                                                        \
    }
#endif

/* Fast pass, AVX2, fp64: 2 x 4 doubles. */
static void pass_f64(const Block *b, double k, double f0, Sums *out) {
    const __m256d K = _mm256_set1_pd(k), F0 = _mm256_set1_pd(f0), zero = _mm256_setzero_pd();
    __m256d s0 = zero, s1 = zero, q0 = zero, q1 = zero, mn0 = F0, mn1 = F0, mx0 = F0, mx1 = F0;
    __m256i z0 = _mm256_setzero_si256(), z1 = z0;
    Sums t = {0, 0, f0, f0, 0};
    for (int64_t r = 0; r < b->nrows; r++) {
        const double *x = (const double *)b->p + r * b->stride;
        const int64_t body = b->len - b->len % 8;
        int64_t i;
        for (i = 0; i < body; i += 8) {
            _mm_prefetch((const char *)(x + i) + PREFETCH, _MM_HINT_T1);
            __m256d x0 = _mm256_loadu_pd(x + i), x1 = _mm256_loadu_pd(x + i + 4);
            __m256d d0 = _mm256_sub_pd(x0, K), d1 = _mm256_sub_pd(x1, K);
            s0 = _mm256_add_pd(s0, d0), s1 = _mm256_add_pd(s1, d1);
            q0 = _mm256_fmadd_pd(d0, d0, q0), q1 = _mm256_fmadd_pd(d1, d1, q1);
            mn0 = _mm256_min_pd(x0, mn0), mn1 = _mm256_min_pd(x1, mn1);
            mx0 = _mm256_max_pd(x0, mx0), mx1 = _mm256_max_pd(x1, mx1);
            z0 = _mm256_sub_epi64(z0, _mm256_castpd_si256(_mm256_cmp_pd(x0, zero, _CMP_EQ_OQ)));
            z1 = _mm256_sub_epi64(z1, _mm256_castpd_si256(_mm256_cmp_pd(x1, zero, _CMP_EQ_OQ)));
        }
        for (; i < b->len; i++) add_one(&t, x[i], k);
    }
    double mns[4], mxs[4];
    int64_t zs[4];
    _mm256_storeu_pd(mns, _mm256_min_pd(mn0, mn1)), _mm256_storeu_pd(mxs, _mm256_max_pd(mx0, mx1));
    _mm256_storeu_si256((__m256i *)zs, _mm256_add_epi64(z0, z1));
    for (int j = 0; j < 4; j++) t.mn = fmin(t.mn, mns[j]), t.mx = fmax(t.mx, mxs[j]), t.z += (double)zs[j];
    t.s += hsum4(_mm256_add_pd(s0, s1)), t.q += hsum4(_mm256_add_pd(q0, q1));
    *out = t;
}
#endif

/* The slow path (a NaN or an infinity in the chunk, or sums that overflow) and the second pass, element by
 * element. Magnitudes above 2^500 are measured as x * 2^-e (a power of two: exact) and unscaled in fp64, so the
 * mean stays finite and m2 is infinite only when it truly overflows. */
#define DEFINE_EXACT(SLOW, SECOND, LOAD)                                                                 \
    static void SECOND(const Block *b, double mean, double scale, double *A, double *B) {                \
        double a = 0, q = 0;                                                                             \
        for (int64_t r = 0; r < b->nrows; r++)                                                           \
            for (int64_t i = 0; i < b->len; i++) {                                                       \
                double v = LOAD(b->p, r * b->stride + i);                                                \
                if (!isfinite(v)) continue;                                                              \
                v *= scale;                                                                              \
                a += v - mean, q += (v - mean) * (v - mean);                                             \
            }                                                                                            \
        *A = a, *B = q;                                                                                  \
    }                                                                                                    \
    static void SLOW(const Block *b, Part *out) {                                                        \
        double cnt = 0, k = 0, s = 0, mn = INFINITY, mx = -INFINITY, zeros = 0, a = 0, q = 0;            \
        for (int64_t r = 0; r < b->nrows; r++)                                                           \
            for (int64_t i = 0; i < b->len; i++) {                                                       \
                double v = LOAD(b->p, r * b->stride + i);                                                \
                if (!isfinite(v)) continue;                                                              \
                cnt += 1, zeros += v == 0;                                                               \
                mn = v < mn ? v : mn;                                                                    \
                mx = v > mx ? v : mx;                                                                    \
            }                                                                                            \
        double big = fmax(fabs(mn), fabs(mx)), scale = 1, inv = 1;                                       \
        if (cnt > 0 && big > 0x1p500) scale = ldexp(1.0, -ilogb(big)), inv = ldexp(1.0, ilogb(big));     \
        k = mn * scale;                                                                                  \
        for (int64_t r = 0; r < b->nrows; r++)                                                           \
            for (int64_t i = 0; i < b->len; i++) {                                                       \
                double v = LOAD(b->p, r * b->stride + i);                                                \
                if (isfinite(v)) s += v * scale - k;                                                     \
            }                                                                                            \
        double mean = cnt > 0 ? k + s / cnt : NAN;                                                       \
        if (cnt > 0) SECOND(b, mean, scale, &a, &q);                                                     \
        out->n = cnt;                                                                                    \
        out->mean = cnt > 0 ? (mean + a / cnt) * inv : NAN;                                              \
        out->m2 = cnt > 0 ? fmax(q - a * a / cnt, 0.0) * inv * inv : 0.0;                                \
        out->mn = cnt > 0 ? mn : NAN;                                                                    \
        out->mx = cnt > 0 ? mx : NAN;                                                                    \
        out->nonfinite = (double)(b->nrows * b->len) - cnt;                                              \
        out->zeros = zeros;                                                                              \
    }

/* One chunk: the fast pass, then the second pass or the slow path when needed. */
#define DEFINE_CHUNK(NAME, LOAD, PASS, SLOW, SECOND)                                                     \
    DEFINE_EXACT(SLOW, SECOND, LOAD)                                                                     \
    static void NAME(const Block *b, Part *out) {                                                        \
        const double n = (double)(b->nrows * b->len);                                                   \
        const int64_t m = b->len < 8 ? b->len : 8;                                                       \
        double k = 0;                                                                                    \
        for (int64_t i = 0; i < m; i++) k += LOAD(b->p, i);                                              \
        k /= (double)m; /* the shift: mean of the first (up to) 8 values, exact for constant data */     \
        Sums t;                                                                                          \
        PASS(b, k, LOAD(b->p, 0), &t); /* extremes start from an element (a NaN one goes slow) */        \
        if (!isfinite(k) || !isfinite(t.s + t.q)) { /* NaN or inf (k - k is NaN for k = inf) */         \
            SLOW(b, out);                                                                                \
            return;                                                                                      \
        }                                                                                                \
        const double c = t.s * t.s / n;                                                                  \
        double mean = k + t.s / n, m2 = t.q - c;                                                         \
        if (c > FAR * t.q) { /* the shift is far from the mean: measure about the mean */                \
            double A, B;                                                                                 \
            SECOND(b, mean, 1.0, &A, &B);                                                                \
            m2 = B - A * A / n;                                                                          \
            mean += A / n;                                                                               \
        }                                                                                                \
        *out = (Part){n, mean, fmax(m2, 0.0), t.mn, t.mx, 0.0, t.z};                                     \
    }

#if defined(__AVX512F__)
DEFINE_PASS_AVX512(pass_f32, load_f32, load16_f32, half8_f32, float)
DEFINE_PASS_AVX512(pass_bf16, load_bf16, load16_bf16, half8_of, uint16_t)
#elif defined(__AVX2__)
DEFINE_PASS_AVX2(pass_f32, load_f32, load8_f32, float)
DEFINE_PASS_AVX2(pass_bf16, load_bf16, load8_bf16, uint16_t)
#else
DEFINE_PASS_LANES(pass_f32, load_f32)
DEFINE_PASS_LANES(pass_bf16, load_bf16)
DEFINE_PASS_LANES(pass_f64, load_f64)
#endif
#if defined(__AVX512F__)
DEFINE_PASS_AVX512(pass_f16, load_f16, load16_f16, half8_of, uint16_t)
#elif defined(HAVE_LOAD8_F16)
DEFINE_PASS_AVX2(pass_f16, load_f16, load8_f16, uint16_t)
#else
DEFINE_PASS_LANES(pass_f16, load_f16)
#endif
DEFINE_CHUNK(chunk_f64, load_f64, pass_f64, slow_f64, second_f64)
DEFINE_CHUNK(chunk_f32, load_f32, pass_f32, slow_f32, second_f32)
DEFINE_CHUNK(chunk_f16, load_f16, pass_f16, slow_f16, second_f16)
DEFINE_CHUNK(chunk_bf16, load_bf16, pass_bf16, slow_bf16, second_bf16)

typedef struct {
    const int64_t *desc;
    Part *parts; /* one per chunk */
} Job;

/* Measure chunks [lo, hi) into parts[lo .. hi) (a range_fn of cpu_parallel.h). */
static int measure_units(void *ctx, const int64_t *first, int64_t lo, int64_t hi, int64_t t) {
    const Job *job = (const Job *)ctx;
    for (int64_t c = lo; c < hi; c++) {
        while (c >= first[t + 1]) t++;
        const int64_t *d = job->desc + DESC * t;
        int64_t dtype = d[1], rows = d[2], cols = d[3], stride = d[4];
        Unit u = unit_at(c - first[t], rows, cols);
        Block b = {(const char *)(intptr_t)d[0] + (u.row * stride + u.col) * ELEMENT_SIZE[dtype], u.n_rows, u.n_cols,
                   stride};
        switch (dtype) {
        case DT_F32: chunk_f32(&b, job->parts + c); break;
        case DT_F16: chunk_f16(&b, job->parts + c); break;
        case DT_BF16: chunk_bf16(&b, job->parts + c); break;
        default: chunk_f64(&b, job->parts + c); break;
        }
    }
    return 0;
}

/* Chan merge of the chunks of one tensor, in order, into its output row. */
static void merge(const Part *parts, int64_t count, double *row) {
    double n = 0, mean = 0, m2 = 0, mn = INFINITY, mx = -INFINITY, nonfinite = 0, zeros = 0;
    for (int64_t c = 0; c < count; c++) {
        const Part *q = parts + c;
        nonfinite += q->nonfinite, zeros += q->zeros;
        if (q->n == 0) continue;
        double total = n + q->n, delta = q->mean - mean;
        if (n == 0) {
            mean = q->mean, m2 = q->m2;
        } else if (delta != 0) {
            mean += delta * (q->n / total);
            m2 += q->m2 + delta * delta * (n * q->n / total);
        } else {
            m2 += q->m2;
        }
        n = total;
        mn = q->mn < mn ? q->mn : mn;
        mx = q->mx > mx ? q->mx : mx;
    }
    row[F_COUNT] = n;
    row[F_MEAN] = n > 0 ? mean : NAN;
    row[F_M2] = m2;
    row[F_SUMSQ] = n > 0 ? m2 + n * mean * mean : 0.0;
    row[F_MIN] = n > 0 ? mn : NAN;
    row[F_MAX] = n > 0 ? mx : NAN;
    row[F_ABSMAX] = n > 0 ? fmax(fabs(mn), fabs(mx)) : NAN;
    row[F_NONFINITE] = nonfinite;
    row[F_ZEROS] = zeros;
}

/* Statistics rows out[n_tensors * N_FIELDS] of the described tensors with up to `threads` threads.
 * Returns 0, or 1 when memory could not be allocated. */
int depthinit_stats(int64_t n_tensors, const int64_t *desc, double *out, int threads) {
    int64_t *first = malloc(sizeof(int64_t) * (n_tensors + 1));
    if (!first) return 1;
    first[0] = 0;
    for (int64_t t = 0; t < n_tensors; t++) {
        first[t + 1] = first[t] + unit_count(desc[DESC * t + 2], desc[DESC * t + 3]); /* rows, cols */
    }
    int64_t chunks = first[n_tensors];
    Part *parts = malloc(sizeof(Part) * (chunks > 0 ? chunks : 1));
    if (!parts) {
        free(first);
        return 1;
    }
    Job job = {desc, parts};
    run_units(measure_units, &job, first, n_tensors, threads, MIN_CHUNKS_PER_THREAD);
    for (int64_t t = 0; t < n_tensors; t++) merge(parts + first[t], first[t + 1] - first[t], out + N_FIELDS * t);
    free(parts);
    free(first);
    return 0;
}
