/* kiln runtime: load a verified bundle (a shared library built with
 * `kiln build --output-kind shared` and its manifest, or a GPU bundle) and call its functions
 * with checked buffers. Link with libkiln_runtime.a and -ldl -lpthread -lm. */
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

/* Opens like kiln_bundle_open, and also requires: when public_key_pem is not NULL, a
 * signature of the manifest (M.json.sig, from `kiln build --sign KEY`) that verifies with
 * that ed25519 public key (PEM text, as `openssl pkey -pubout` writes it); when memory_limit
 * is not 0, that no function's call uses more than memory_limit bytes (parameters, results
 * and workspace). */
kiln_bundle *kiln_bundle_open_with(const char *manifest_path, const char *public_key_pem, uint64_t memory_limit,
                                   char *error, size_t error_len);

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
 * for one per core, at most 1024 (fewer if the system refuses to start more). Returns the
 * count now in use. Bundles use the pool when they open; an object linked directly uses it
 * after `M_set_parallel_for(kiln_parallel_for)` (M is the module name). */
size_t kiln_set_threads(size_t threads);

/* The pool's parallel-for: calls body on disjoint chunks covering [0, n), each at least grain
 * iterations except perhaps the last, and returns when all have finished. */
void kiln_parallel_for(void (*body)(void *ctx, int64_t begin, int64_t end), void *ctx, int64_t n,
                       int64_t grain);

/* GPU bundles (`kiln build --target nvptx64-nvidia-cuda`), run through the CUDA driver (loaded
 * at run time: nothing of CUDA is needed to build or link) or on kiln's PTX emulator. Every
 * function but kiln_gpu_open returns 0 on success and 1 on failure, the reason in error. */
typedef struct KilnGpu kiln_gpu;

/* Opens and verifies the GPU bundle whose manifest is at manifest_path and loads it on CUDA
 * device `device`, or on kiln's PTX emulator when emulate is non-zero. Refuses, before touching
 * the device, a bundle one of whose calls needs more than memory_limit bytes of device memory
 * (0: no limit). Returns NULL on failure (no driver, no GPU, ...), the reason in error. */
kiln_gpu *kiln_gpu_open(const char *manifest_path, size_t device, size_t memory_limit,
                        int32_t emulate, char *error, size_t error_len);

/* Calls function with host buffers, as kiln_bundle_call: the inputs are copied to the device,
 * the launch plan runs, the results are copied back. */
int32_t kiln_gpu_call(const kiln_gpu *gpu, const char *function,
                      const void *const *inputs, const size_t *input_bytes, size_t num_inputs,
                      void *const *outputs, const size_t *output_bytes, size_t num_outputs,
                      char *error, size_t error_len);

/* Calls function on device pointers, parameters then results, with no copies: CUdeviceptr
 * values of the device (from cudaMalloc, the driver or another library) or addresses from
 * kiln_gpu_alloc. Refused: a wrong count, a pointer that is not device memory or has fewer
 * bytes after it than its buffer needs, a result overlapping another buffer. Returns when the
 * results are computed. */
int32_t kiln_gpu_call_device(const kiln_gpu *gpu, const char *function, const uint64_t *buffers,
                             size_t num_buffers, char *error, size_t error_len);

/* Device memory owned by the handle: allocated (contents unspecified), filled and read whole,
 * freed by kiln_gpu_free or kiln_gpu_close. */
int32_t kiln_gpu_alloc(const kiln_gpu *gpu, size_t bytes, uint64_t *address, char *error,
                       size_t error_len);
int32_t kiln_gpu_copy_to_device(const kiln_gpu *gpu, uint64_t address, const void *data,
                                size_t bytes, char *error, size_t error_len);
int32_t kiln_gpu_copy_from_device(const kiln_gpu *gpu, void *data, uint64_t address,
                                  size_t bytes, char *error, size_t error_len);
void kiln_gpu_free(const kiln_gpu *gpu, uint64_t address);

/* Unloads a GPU bundle and frees its buffers; NULL is ignored. */
void kiln_gpu_close(kiln_gpu *gpu);

#ifdef __cplusplus
}
#endif

#endif /* KILN_RUNTIME_H */
