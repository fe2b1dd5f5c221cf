/* What the CPU kernels (cpu_fill.c, cpu_stats.c) share: the dtype codes of depthinit.kernels.contract, the cut of
 * tensors into work units, and the run of contiguous ranges of units on a few threads.
 *
 * A tensor is seen as `rows` runs of `cols` contiguous elements. Its work units hold about CHUNK elements each:
 * a segment of CHUNK elements of a long run, or a group of whole short runs. The units of all tensors are numbered
 * in order (first[t] is the first unit of tensor t, first[n] the total) and split into contiguous ranges, one per
 * thread. What a kernel computes for a unit never depends on the split: results are independent of the number of
 * threads.
 */
#ifndef DEPTHINIT_CPU_PARALLEL_H
#define DEPTHINIT_CPU_PARALLEL_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2, DT_F64 = 3 }; /* contract.DTYPE_CODES */
enum { CHUNK = 4096, MAX_THREADS = 256 };
static const int ELEMENT_SIZE[] = {4, 2, 2, 8}; /* bytes per element of each DT_* code */

static int64_t rows_per_unit(int64_t cols) { return cols >= CHUNK ? 1 : CHUNK / cols; }
static int64_t segments(int64_t cols) { return cols >= CHUNK ? (cols + CHUNK - 1) / CHUNK : 1; }

/* The number of units of a tensor of rows x cols. */
static int64_t unit_count(int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return 0;
    int64_t rpu = rows_per_unit(cols);
    return (rows + rpu - 1) / rpu * segments(cols);
}

/* Unit `local` of a tensor of rows x cols: rows [row, row + n_rows), columns [col, col + n_cols). */
typedef struct {
    int64_t row, n_rows, col, n_cols;
} Unit;

static Unit unit_at(int64_t local, int64_t rows, int64_t cols) {
    int64_t seg = segments(cols), rpu = rows_per_unit(cols);
    Unit u;
    u.row = local / seg * rpu, u.col = local % seg * CHUNK;
    u.n_rows = rows - u.row < rpu ? rows - u.row : rpu;
    u.n_cols = cols - u.col < CHUNK ? cols - u.col : CHUNK;
    return u;
}

/* Work on units [lo, hi); `tensor` is the tensor of unit lo. Returns 0, or nonzero on failure. */
typedef int (*range_fn)(void *ctx, const int64_t *first, int64_t lo, int64_t hi, int64_t tensor);

typedef struct {
    range_fn fn;
    void *ctx;
    const int64_t *first;
    int64_t lo, hi, tensor;
    int result;
} Range;

static void *run_range(void *arg) {
    Range *r = (Range *)arg;
    r->result = r->fn(r->ctx, r->first, r->lo, r->hi, r->tensor);
    return NULL;
}

/* The OpenMP runtime torch runs its own parallel regions on (libgomp's GOMP_parallel ABI, which LLVM's and
 * Intel's runtimes export too), handed over by the Python side (kernels/native.py) through
 * depthinit_use_openmp; unset, the ranges run on threads of their own. On torch's team the ranges run on the
 * threads that just ran torch's last operator: they spin for a while after each region, and threads of our own
 * would share the cores with them (up to 2.5x slower measured just after torch reductions on 2 cores), and there is
 * no thread to create. */
typedef void (*omp_parallel_fn)(void (*body)(void *), void *data, unsigned num_threads, unsigned flags);
typedef int (*omp_int_fn)(void);
static omp_parallel_fn omp_parallel;
static omp_int_fn omp_thread_num, omp_num_threads;

/* Run ranges on torch's OpenMP team: parallel = GOMP_parallel, thread_num / num_threads = omp_get_thread_num /
 * omp_get_num_threads of the same runtime; any NULL: threads of our own. */
void depthinit_use_openmp(void *parallel, void *thread_num, void *num_threads) {
    int all = parallel && thread_num && num_threads;
    omp_parallel = all ? (omp_parallel_fn)parallel : NULL;
    omp_thread_num = all ? (omp_int_fn)thread_num : NULL;
    omp_num_threads = all ? (omp_int_fn)num_threads : NULL;
}

typedef struct {
    Range *ranges;
    int count;
} Team;

/* The body of the parallel region: the team's thread i of T runs ranges i, i + T, ... (all of them when the
 * runtime gives fewer threads than asked, e.g. inside another parallel region). */
static void run_team(void *arg) {
    const Team *team = (const Team *)arg;
    int t = omp_num_threads(), i = omp_thread_num();
    for (int j = i; j < team->count; j += t > 0 ? t : team->count) run_range(team->ranges + j);
}

/* fn over the units [0, first[n]) of n tensors, in up to `threads` contiguous ranges (fewer, so that each holds at
 * least min_per_thread units), on torch's OpenMP team when it was handed over, else on threads of our own: range
 * 0 runs on the caller, a thread that cannot start leaves its range to the caller. Returns 0, or 1 when any range
 * failed. */
static int run_units(range_fn fn, void *ctx, const int64_t *first, int64_t n, int threads, int64_t min_per_thread) {
    int64_t units = first[n];
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > units / min_per_thread) threads = (int)(units / min_per_thread);
    if (threads < 1) threads = 1;
    Range ranges[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    char started[MAX_THREADS] = {0};
    for (int j = 0; j < threads; j++) {
        Range *r = ranges + j;
        r->fn = fn, r->ctx = ctx, r->first = first, r->result = 0;
        r->lo = units * j / threads, r->hi = units * (j + 1) / threads;
        int64_t t = 0;
        while (t < n && first[t + 1] <= r->lo) t++;
        r->tensor = t;
    }
    if (threads > 1 && omp_parallel) {
        Team team = {ranges, threads};
        omp_parallel(run_team, &team, (unsigned)threads, 0);
        int failed = 0;
        for (int j = 0; j < threads; j++) failed |= ranges[j].result != 0;
        return failed;
    }
    for (int j = 1; j < threads; j++) started[j] = pthread_create(ids + j, NULL, run_range, ranges + j) == 0;
    run_range(ranges);
    int failed = ranges[0].result != 0;
    for (int j = 1; j < threads; j++) {
        if (started[j])
            pthread_join(ids[j], NULL);
        else
            run_range(ranges + j);
        failed |= ranges[j].result != 0;
    }
    return failed;
}

#endif
