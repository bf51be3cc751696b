// mosel::drop_and_pack and mosel::drop_and_pack_into: the checked, host-side "job" that
// every backend executes, and the op kernels written once over the backends. Schemas,
// contract and checks: drop_and_pack.cpp; backends: drop_and_pack_cpu.cpp (CPU),
// drop_and_pack_cuda.cpp + drop_and_pack_kernel.cu (CUDA).
//
// Bad arguments raise c10::ValueError (Python ValueError) through TORCH_CHECK_VALUE.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

namespace mosel {

// What drop_and_pack does per element: either a plain copy (output dtype equals the
// input dtype and mean == 0, std == 1) or convert-to-float32, (v - mean) / std,
// round to the output dtype.
struct Normalization {
  bool plain_copy = false;
  float mean = 0.f;
  float std = 1.f;
};

// Everything a kernel needs besides the data. `table` is an int64 CPU tensor [3, K]
// (pinned when asked for, so a CUDA backend can upload it with one asynchronous copy):
//   row 0: element offset in `flat` of the first step of kept item k
//   row 1: output length (steps written) of kept item k
//   row 2: original request position of kept item k
struct PackPlan {
  int64_t kept = 0;          // K
  int64_t steps = 0;         // L (padded length)
  int64_t row_elems = 0;     // R
  int64_t frame_stride = 1;  // k
  at::Tensor table;

  const int64_t* src_offset() const { return table.const_data_ptr<int64_t>(); }
  const int64_t* out_length() const { return table.const_data_ptr<int64_t>() + kept; }
  const int64_t* index() const { return table.const_data_ptr<int64_t>() + 2 * kept; }
  // True when every kept item's first element offset is a multiple of `n`.
  bool offsets_multiple_of(int64_t n) const;
};

// A checked call: the per-element work, the plan and the outputs the kernel must fill
// completely (packed [K, L, R], out_lengths int64[K], index int64[K], on flat's device).
struct PackJob {
  Normalization norm;
  PackPlan plan;
  at::Tensor packed;
  at::Tensor out_lengths;
  at::Tensor index;
};

// drop_and_pack: checks every argument, builds the plan and allocates the outputs.
// `pin_memory` asks for a pinned plan table. Metadata (offsets, lengths, keep) may live
// on the CPU (preferred) or on flat's device (then it is copied to the host, which
// synchronises).
PackJob prepare_drop_and_pack(const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths,
                              const at::Tensor& keep, int64_t row_elems, int64_t frame_stride,
                              at::ScalarType out_dtype, double mean, double std, int64_t max_steps,
                              bool pin_memory, const char* op);

// drop_and_pack_into: the same with the caller's outputs, whose shape gives K, L, R
// and whose dtype gives the output dtype; K must equal the number of kept items.
PackJob prepare_drop_and_pack_into(const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths,
                                   const at::Tensor& keep, int64_t frame_stride, double mean, double std,
                                   const at::Tensor& packed, const at::Tensor& out_lengths,
                                   const at::Tensor& index, bool pin_memory, const char* op);

// The two ops' kernels, written once for all backends (registered per backend with
// TORCH_LIBRARY_IMPL). `Backend` provides:
//   enter(flat, op)       checks that flat is on this backend; returns what the call
//                         holds until it ends (the CUDA device guard);
//   kPinnedPlan           whether the plan table is pinned (for an asynchronous upload);
//   run(flat, job, op)    fills the job's outputs completely.
template <typename Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> drop_and_pack_kernel(
    const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths, const at::Tensor& keep,
    int64_t row_elems, int64_t frame_stride, at::ScalarType out_dtype, double mean, double std,
    int64_t max_steps) {
  constexpr const char* op = "mosel::drop_and_pack";
  [[maybe_unused]] const auto scope = Backend::enter(flat, op);
  const PackJob job = prepare_drop_and_pack(flat, offsets, lengths, keep, row_elems, frame_stride, out_dtype,
                                            mean, std, max_steps, Backend::kPinnedPlan, op);
  Backend::run(flat, job, op);
  return {job.packed, job.out_lengths, job.index};
}

template <typename Backend>
void drop_and_pack_into_kernel(
    const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths, const at::Tensor& keep,
    int64_t frame_stride, double mean, double std, const at::Tensor& packed, const at::Tensor& out_lengths,
    const at::Tensor& index) {
  constexpr const char* op = "mosel::drop_and_pack_into";
  [[maybe_unused]] const auto scope = Backend::enter(flat, op);
  Backend::run(flat,
               prepare_drop_and_pack_into(flat, offsets, lengths, keep, frame_stride, mean, std, packed,
                                          out_lengths, index, Backend::kPinnedPlan, op),
               op);
}

}  // namespace mosel
