/* kiln runtime: load a verified bundle (a shared library built with
 * `kiln build --output-kind shared` and its manifest) and call its functions with checked
 * buffers. Link with libkiln_runtime.a and -ldl -lpthread -lm. */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct KilnBundle kiln_bundle;

/* Opens the bundle whose manifest is at manifest_path and verifies it (format, version,
 * target, file hashes, the ABI compiled into the library). Returns NULL on failure, with the
 * reason in error (error_len bytes, may be NULL). */
kiln_bundle *kiln_bundle_open(const char *manifest_path, char *error, size_t error_len);

/* Calls function with input and output buffers (raw row-major elements) and their sizes in
 * bytes. Returns 0 on success, 1 when refused (unknown function, wrong count or size, NULL
 * pointer) or when the compiled code fails, with the reason in error. */
int32_t kiln_bundle_call(const kiln_bundle *bundle, const char *function,
                         const void *const *inputs, const size_t *input_bytes, size_t num_inputs,
                         void *const *outputs, const size_t *output_bytes, size_t num_outputs,
                         char *error, size_t error_len);

/* Unloads a bundle; NULL is ignored. */
void kiln_bundle_close(kiln_bundle *bundle);

/* Sets how many threads (the caller's included) run compiled parallel loops: 1 by default, 0
 * for one per core. Bundles use the pool when they open; an object linked directly uses it
 * after `M_set_parallel_for(kiln_parallel_for)` (M is the module name). */
void kiln_set_threads(size_t threads);

/* The pool's parallel-for: calls body on disjoint chunks covering [0, n), each at least grain
 * iterations except perhaps the last, and returns when all have finished. */
void kiln_parallel_for(void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx, int64_t n,
                       int64_t grain);

#ifdef __cplusplus
}
#endif

#endif /* KILN_RUNTIME_H */
