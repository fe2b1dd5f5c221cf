/* The metadata of many tensors in one call, read through torch's stable C shim (torch/csrc/inductor/aoti_torch/
 * c/shim.h, exported by libtorch_cpu): what the CPU kernels' tables need, without a Python call per attribute.
 *
 * Every tensor comes as its TensorImpl address (``Tensor._cdata``). An ``at::Tensor`` is one intrusive pointer
 * to its TensorImpl, so the address of that int64 is a valid ``AtenTensorHandle`` for the shim's getters (which
 * only read through it: no reference is taken or dropped). The Python side checks this on known tensors before
 * it uses the library (kernels/tensor_meta.py).
 *
 * Out: per tensor, M_FIELDS int64
 *     data pointer (of the first element; 0 when the tensor has no element), element count, bytes of the
 *     storage, storage offset (in elements), dtype code (codes[torch scalar type], -1 past the end of codes),
 *     contiguous (0 / 1)
 * Returns -1, or the index of the first tensor a getter refused (e.g. a tensor without storage): the caller then
 * reads the tensors in Python, which raises torch's own message.
 */
#include <stdbool.h>
#include <stdint.h>

typedef int32_t (*ptr_fn)(void *, void **);
typedef int32_t (*i64_fn)(void *, int64_t *);
typedef int32_t (*i32_fn)(void *, int32_t *);
typedef int32_t (*bool_fn)(void *, bool *);

enum { M_PTR, M_NUMEL, M_NBYTES, M_OFFSET, M_DTYPE, M_CONTIGUOUS, M_FIELDS };

/* Lines of each TensorImpl asked for ahead of the reads: a list measured again is often out of the caches (the
 * kernel read its data since), and each getter's loads wait on the previous one. A prefetch never faults. */
enum { AHEAD = 16, IMPL_LINES = 4 };

/* fns: aoti_torch_get_data_ptr, _get_numel, _get_storage_size, _get_storage_offset, _get_dtype, _is_contiguous.
 * Two passes: the storage sizes first (TensorImpl, then StorageImpl: one short call a tensor, so that the misses
 * of several tensors overlap), then the other fields from lines now in cache. */
int64_t depthinit_tensor_meta(int64_t n, int64_t *impl, void *const *fns, const int64_t *codes, int64_t n_codes,
                              int64_t *out) {
    const ptr_fn data_ptr = (ptr_fn)fns[0];
    const i64_fn numel = (i64_fn)fns[1], nbytes = (i64_fn)fns[2], offset = (i64_fn)fns[3];
    const i32_fn dtype = (i32_fn)fns[4];
    const bool_fn contiguous = (bool_fn)fns[5];
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n)
            for (int l = 0; l < IMPL_LINES; l++) __builtin_prefetch((const char *)(intptr_t)impl[i + AHEAD] + 64 * l);
        if (nbytes((void *)(impl + i), out + M_FIELDS * i + M_NBYTES)) return i;
    }
    for (int64_t i = 0; i < n; i++) {
        void *h = (void *)(impl + i);
        int64_t *o = out + M_FIELDS * i;
        void *p = 0;
        int32_t d = 0;
        bool c = 0;
        if (numel(h, o + M_NUMEL) || offset(h, o + M_OFFSET) || dtype(h, &d) || contiguous(h, &c)
            || (o[M_NUMEL] > 0 && data_ptr(h, &p)))
            return i;
        o[M_PTR] = (int64_t)(intptr_t)p, o[M_DTYPE] = d >= 0 && d < n_codes ? codes[d] : -1, o[M_CONTIGUOUS] = c;
    }
    return -1;
}
