// Shared, backend-independent part of the mosel ops: argument checks and the
// host-side "plan" every backend kernel executes. Implemented in csrc/ops.cpp,
// which also declares the op schemas (TORCH_LIBRARY(mosel, ...)).
//
// Ops (see ops.cpp for the schemas and docs/semantics):
//   mosel::drop_and_pack       ragged items of one modality -> padded [K, L, row] batch of kept items
//   mosel::drop_and_pack_into  same, into caller-provided outputs (fixed K, L, row, dtype)
//   mosel::scatter_back        [K, D] embeddings of kept items -> [N, D] + present[N]
//   mosel::scatter_back_into   [K, D] -> slot m of a preallocated [N, M, D] fusion tensor
//
// Bad arguments raise c10::ValueError (Python ValueError) through TORCH_CHECK_VALUE.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace mosel {

// What drop_and_pack does per element: either a plain copy (output dtype equals the
// input dtype and mean == 0, std == 1) or convert-to-float32, (v - mean) / std,
// round to the output dtype.
struct Normalization {
  bool plain_copy = false;
  float mean = 0.f;
  float std = 1.f;
};

// Result of the checks for drop_and_pack: everything a kernel needs besides the data.
// `table` is an int64 CPU tensor [3, K] (pinned when asked for, so a CUDA backend can
// upload it with one asynchronous copy):
//   row 0: element offset in `flat` of the first step of kept item k
//   row 1: output length (steps written) of kept item k
//   row 2: original request position of kept item k
struct PackPlan {
  int64_t num_requests = 0;  // N
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

// Checks flat/offsets/lengths/keep and builds the plan. `steps` < 0 means "longest
// kept item after sub-sampling"; otherwise every item is truncated/padded to exactly
// `steps` steps. Metadata (offsets, lengths, keep) may live on the CPU (preferred) or
// on flat's device (then it is copied to the host, which synchronises).
PackPlan plan_drop_and_pack(
    const at::Tensor& flat,
    const at::Tensor& offsets,
    const at::Tensor& lengths,
    const at::Tensor& keep,
    int64_t row_elems,
    int64_t frame_stride,
    int64_t steps,
    bool pin_memory,
    const char* op);

// Checks the dtype pair and mean/std; decides between a plain copy and normalisation.
Normalization check_pack_dtypes(
    at::ScalarType in,
    at::ScalarType out,
    double mean,
    double std,
    const char* op);

// Checks drop_and_pack_into's output tensors against `flat`; returns {K, L, R} of `packed`.
struct PackedShape {
  int64_t kept, steps, row_elems;
};
PackedShape check_pack_outputs(
    const at::Tensor& flat,
    const at::Tensor& packed,
    const at::Tensor& out_lengths,
    const at::Tensor& index,
    const char* op);

// dtype allowed for embeddings (src/out of the scatter ops): float16, bfloat16, float32.
void check_embedding_tensor(const at::Tensor& t, int64_t dim, const char* name, const char* op);

// Validates `index` (int64 1-D, K entries, each in [0, num_rows), no duplicates) and
// returns its values on the host. If `inverse` is given it is filled with num_rows
// entries: the position k with index[k] == row, or -1.
std::vector<int64_t> check_scatter_index(
    const at::Tensor& index,
    const at::Tensor& src,
    int64_t num_rows,
    std::vector<int64_t>* inverse,
    const char* op);

// Checks scatter_back_into's out/present/slot against src; returns {N, M, D}.
struct FusionShape {
  int64_t num_rows, slots, dim;
};
FusionShape check_fusion_outputs(
    const at::Tensor& out,
    const at::Tensor& present,
    const at::Tensor& src,
    int64_t slot,
    const char* op);

// True for the dtypes a packed input buffer may hold.
bool is_pack_input_dtype(at::ScalarType t);

}  // namespace mosel
