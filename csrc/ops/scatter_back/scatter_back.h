// mosel::scatter_back and mosel::scatter_back_into: the checks every backend runs before
// its kernel, and the op kernels written once over the backends. Schemas, contract and
// checks: scatter_back.cpp; backends: scatter_back_cpu.cpp (CPU), scatter_back_cuda.cpp +
// scatter_back_kernel.cu (CUDA).
//
// Bad arguments raise c10::ValueError (Python ValueError) through TORCH_CHECK_VALUE.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace mosel {

// dtype allowed for embeddings (src/out of the scatter ops): float16, bfloat16, float32;
// also checks `dim` dimensions and contiguity.
void check_embedding_tensor(const at::Tensor& t, int64_t dim, const char* name, const char* op);

// A checked scatter_back call: outputs allocated like src, to be filled completely.
struct ScatterBackJob {
  std::vector<int64_t> inverse;  // [N]: the src row k with index[k] == n, or -1
  at::Tensor out;                // [N, D] of src's dtype
  at::Tensor present;            // bool [N]
};

// Checks index against src (checked before, with the backend's device check) and
// num_requests, and allocates the outputs.
ScatterBackJob prepare_scatter_back(const at::Tensor& src, const at::Tensor& index, int64_t num_requests,
                                    const char* op);

// A checked scatter_back_into call.
struct ScatterIntoJob {
  int64_t num_rows, slots, dim;  // out is [N, M, D]
  std::vector<int64_t> rows;     // [K]: index on the host
};

// Checks out/present/slot and index against src (checked before, as above).
ScatterIntoJob prepare_scatter_back_into(const at::Tensor& out, const at::Tensor& present, const at::Tensor& src,
                                         const at::Tensor& index, int64_t slot, const char* op);

// The two ops' kernels, written once for all backends (registered per backend with
// TORCH_LIBRARY_IMPL). `Backend` provides:
//   enter(src, op)        checks that src is on this backend; returns what the call
//                         holds until it ends (the CUDA device guard);
//   scatter_back(src, job, op)
//                         fills job.out and job.present completely;
//   scatter_back_into(out, present, src, job, slot, op)
//                         writes out[rows[k], slot] and present[rows[k], slot].
template <typename Backend>
std::tuple<at::Tensor, at::Tensor> scatter_back_kernel(const at::Tensor& src, const at::Tensor& index,
                                                       int64_t num_requests) {
  constexpr const char* op = "mosel::scatter_back";
  check_embedding_tensor(src, 2, "src", op);
  [[maybe_unused]] const auto scope = Backend::enter(src, op);
  const ScatterBackJob job = prepare_scatter_back(src, index, num_requests, op);
  Backend::scatter_back(src, job, op);
  return {job.out, job.present};
}

template <typename Backend>
void scatter_back_into_kernel(const at::Tensor& out, const at::Tensor& present, const at::Tensor& src,
                              const at::Tensor& index, int64_t slot) {
  constexpr const char* op = "mosel::scatter_back_into";
  check_embedding_tensor(src, 2, "src", op);
  [[maybe_unused]] const auto scope = Backend::enter(src, op);
  Backend::scatter_back_into(out, present, src, prepare_scatter_back_into(out, present, src, index, slot, op),
                             slot, op);
}

}  // namespace mosel
