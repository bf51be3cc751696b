// The schemas of mosel::drop_and_pack and mosel::drop_and_pack_into (declared once, here)
// and the checks both backends run before their kernels (drop_and_pack_cpu.cpp,
// drop_and_pack_cuda.cpp). Fake kernels for torch.compile: mosel/ops/fake.py.
//
// drop_and_pack(flat, offsets, lengths, keep, row_elems, frame_stride, out_dtype,
//               mean, std, max_steps) -> (packed, out_lengths, index)
//   flat      1-D contiguous uint8/float16/bfloat16/float32 buffer with N ragged items
//             of one modality; item i starts at element offsets[i] and has lengths[i]
//             steps of row_elems elements (offsets/lengths int64[N], keep bool[N];
//             metadata on the CPU, or on flat's device at the cost of a host sync).
//   packed    out_dtype [K, L, row_elems], the K kept items in request order. Step t of
//             kept item k is step t*frame_stride of the item; out length
//             ceil(len / frame_stride), capped at L. Values are (v - mean) / std computed
//             in float32 and rounded to out_dtype; steps past an item's length are 0
//             (written after normalisation). out_dtype == flat's dtype with mean=0, std=1
//             is a plain copy (the only form allowed for uint8 outputs).
//             L = max_steps if max_steps > 0, else the longest kept item.
//   out_lengths int64[K] steps written per kept item; index int64[K] request position of
//             each kept item. Both live on flat's device.
// drop_and_pack_into(flat, offsets, lengths, keep, frame_stride, mean, std,
//                    packed!, out_lengths!, index!) -> ()
//   Same, into caller-provided outputs: K, L, row_elems and out_dtype are taken from
//   packed [K, L, R]; K must equal the number of kept items. Every element of the
//   outputs is written (a preallocated / graph-captured buffer needs no clearing).
//
// The ops are inference-only (no autograd formulas).
#include "ops/drop_and_pack/drop_and_pack.h"

#include "common/checks.h"

#include <ATen/ops/empty.h>
#include <c10/util/safe_numerics.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

namespace mosel {
namespace {

int64_t sampled_length(int64_t len, int64_t stride) {
  return len == 0 ? 0 : (len - 1) / stride + 1;  // ceil(len / stride) without overflow
}

bool is_pack_input_dtype(at::ScalarType t) {
  return t == at::kByte || t == at::kHalf || t == at::kBFloat16 || t == at::kFloat;
}

// Checks the dtype pair and mean/std; decides between a plain copy and normalisation.
Normalization check_pack_dtypes(
    at::ScalarType in, at::ScalarType out, double mean, double std, const char* op) {
  TORCH_CHECK_VALUE(
      std::isfinite(mean) && std::isfinite(std),
      op, ": mean and std must be finite, got mean=", mean, " std=", std);
  Normalization norm;
  norm.mean = static_cast<float>(mean);
  norm.std = static_cast<float>(std);
  TORCH_CHECK_VALUE(
      norm.std != 0.f && std::isfinite(norm.std) && std::isfinite(norm.mean),
      op, ": std must be non-zero and mean/std must fit float32, got mean=", mean, " std=", std);
  const bool identity = mean == 0.0 && std == 1.0;
  const bool float_out = out == at::kHalf || out == at::kBFloat16 || out == at::kFloat;
  if (out == in && identity) {
    norm.plain_copy = true;
  } else {
    TORCH_CHECK_VALUE(
        float_out || out == in,
        op, ": out_dtype must be Half, BFloat16 or Float (or the input dtype ", in,
        " for a plain copy), got ", out);
    TORCH_CHECK_VALUE(
        float_out,
        op, ": out_dtype ", out, " equals the input dtype; an integral output is only a plain "
        "copy and needs mean=0 and std=1, got mean=", mean, " std=", std);
  }
  return norm;
}

// Checks flat/offsets/lengths/keep and builds the plan. `steps` < 0 means "longest
// kept item after sub-sampling"; otherwise every item is truncated/padded to exactly
// `steps` steps.
PackPlan plan_drop_and_pack(const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths,
                            const at::Tensor& keep, int64_t row_elems, int64_t frame_stride, int64_t steps,
                            bool pin_memory, const char* op) {
  TORCH_CHECK_VALUE(flat.defined(), op, ": flat is undefined");
  TORCH_CHECK_VALUE(
      is_pack_input_dtype(flat.scalar_type()),
      op, ": flat must be Byte (uint8), Half, BFloat16 or Float, got ", flat.scalar_type());
  TORCH_CHECK_VALUE(flat.dim() == 1, op, ": flat must be 1-D, got shape ", flat.sizes());
  TORCH_CHECK_VALUE(
      flat.is_contiguous(), op, ": flat must be contiguous (stride ", flat.stride(0), ")");
  TORCH_CHECK_VALUE(row_elems >= 1, op, ": row_elems must be >= 1, got ", row_elems);
  TORCH_CHECK_VALUE(frame_stride >= 1, op, ": frame_stride must be >= 1, got ", frame_stride);
  TORCH_CHECK_VALUE(keep.defined(), op, ": keep is undefined");
  TORCH_CHECK_VALUE(keep.dim() == 1, op, ": keep must be 1-D, got shape ", keep.sizes());
  const int64_t n = keep.size(0);
  const at::Tensor keep_h = host_metadata(keep, "keep", at::kBool, n, flat, "flat", op);
  const at::Tensor off_h = host_metadata(offsets, "offsets", at::kLong, n, flat, "flat", op);
  const at::Tensor len_h = host_metadata(lengths, "lengths", at::kLong, n, flat, "flat", op);
  // Read bools as bytes: any non-zero byte counts as kept.
  const auto* kp = static_cast<const uint8_t*>(keep_h.const_data_ptr());
  const int64_t* op_ = off_h.const_data_ptr<int64_t>();
  const int64_t* lp = len_h.const_data_ptr<int64_t>();
  const int64_t numel = flat.numel();

  int64_t kept = 0;
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = op_[i];
    const int64_t len = lp[i];
    TORCH_CHECK_VALUE(len >= 0, op, ": lengths[", i, "] is negative (", len, ")");
    TORCH_CHECK_VALUE(
        off >= 0 && off <= numel,
        op, ": offsets[", i, "] = ", off, " is outside flat (", numel, " elements)");
    // len * row_elems <= numel - off, written without overflow.
    TORCH_CHECK_VALUE(
        len <= (numel - off) / row_elems,
        op, ": item ", i, " (offset ", off, ", ", len, " steps x ", row_elems,
        " elements) reaches past the end of flat (", numel, " elements)");
    if (kp[i]) {
      ++kept;
      longest = std::max(longest, sampled_length(len, frame_stride));
    }
  }
  const int64_t padded = steps < 0 ? longest : steps;
  int64_t total = 0;
  TORCH_CHECK_VALUE(
      !c10::mul_overflows(kept, padded, &total) && !c10::mul_overflows(total, row_elems, &total),
      op, ": output of ", kept, " x ", padded, " x ", row_elems, " elements is too large");

  PackPlan plan;
  plan.kept = kept;
  plan.steps = padded;
  plan.row_elems = row_elems;
  plan.frame_stride = frame_stride;
  plan.table = at::empty(
      {3, kept}, at::TensorOptions().dtype(at::kLong).pinned_memory(pin_memory));
  int64_t* t = plan.table.mutable_data_ptr<int64_t>();
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (kp[i]) {
      t[k] = op_[i];
      t[kept + k] = std::min(sampled_length(lp[i], frame_stride), padded);
      t[2 * kept + k] = i;
      ++k;
    }
  }
  return plan;
}

// {K, L, R} of drop_and_pack_into's `packed`.
struct PackedShape {
  int64_t kept, steps, row_elems;
};

// Checks drop_and_pack_into's output tensors against `flat`.
PackedShape check_pack_outputs(const at::Tensor& flat, const at::Tensor& packed, const at::Tensor& out_lengths,
                               const at::Tensor& index, const char* op) {
  TORCH_CHECK_VALUE(packed.defined(), op, ": packed is undefined");
  TORCH_CHECK_VALUE(
      packed.dim() == 3, op, ": packed must be 3-D [K, L, row_elems], got shape ", packed.sizes());
  TORCH_CHECK_VALUE(packed.is_contiguous(), op, ": packed must be contiguous");
  TORCH_CHECK_VALUE(
      packed.device() == flat.device(),
      op, ": packed is on ", packed.device(), " but flat is on ", flat.device());
  TORCH_CHECK_VALUE(
      !packed.is_alias_of(flat), op, ": packed must not share memory with flat");
  const int64_t kept = packed.size(0);
  const char* names[2] = {"out_lengths", "index"};
  const at::Tensor* ts[2] = {&out_lengths, &index};
  for (int j = 0; j < 2; ++j) {
    const at::Tensor& t = *ts[j];
    TORCH_CHECK_VALUE(t.defined(), op, ": ", names[j], " is undefined");
    TORCH_CHECK_VALUE(
        t.scalar_type() == at::kLong, op, ": ", names[j], " must be Long, got ", t.scalar_type());
    TORCH_CHECK_VALUE(
        t.dim() == 1 && t.size(0) == kept,
        op, ": ", names[j], " must have shape [", kept, "], got ", t.sizes());
    TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", names[j], " must be contiguous");
    TORCH_CHECK_VALUE(
        t.device() == flat.device(),
        op, ": ", names[j], " is on ", t.device(), " but flat is on ", flat.device());
  }
  return {kept, packed.size(1), packed.size(2)};
}

}  // namespace

bool PackPlan::offsets_multiple_of(int64_t n) const {
  const int64_t* off = src_offset();
  for (int64_t k = 0; k < kept; ++k) {
    if (off[k] % n != 0) {
      return false;
    }
  }
  return true;
}

PackJob prepare_drop_and_pack(const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths,
                              const at::Tensor& keep, int64_t row_elems, int64_t frame_stride,
                              at::ScalarType out_dtype, double mean, double std, int64_t max_steps,
                              bool pin_memory, const char* op) {
  TORCH_CHECK_VALUE(max_steps >= 0, op, ": max_steps must be >= 0 (0 = longest item), got ", max_steps);
  PackJob job;
  job.norm = check_pack_dtypes(flat.scalar_type(), out_dtype, mean, std, op);
  job.plan = plan_drop_and_pack(
      flat, offsets, lengths, keep, row_elems, frame_stride, max_steps > 0 ? max_steps : -1, pin_memory, op);
  const PackPlan& plan = job.plan;
  job.packed = at::empty({plan.kept, plan.steps, plan.row_elems}, flat.options().dtype(out_dtype));
  job.out_lengths = at::empty({plan.kept}, flat.options().dtype(at::kLong));
  job.index = at::empty({plan.kept}, flat.options().dtype(at::kLong));
  return job;
}

PackJob prepare_drop_and_pack_into(const at::Tensor& flat, const at::Tensor& offsets, const at::Tensor& lengths,
                                   const at::Tensor& keep, int64_t frame_stride, double mean, double std,
                                   const at::Tensor& packed, const at::Tensor& out_lengths,
                                   const at::Tensor& index, bool pin_memory, const char* op) {
  const PackedShape shape = check_pack_outputs(flat, packed, out_lengths, index, op);
  PackJob job;
  job.norm = check_pack_dtypes(flat.scalar_type(), packed.scalar_type(), mean, std, op);
  job.plan = plan_drop_and_pack(
      flat, offsets, lengths, keep, shape.row_elems, frame_stride, shape.steps, pin_memory, op);
  TORCH_CHECK_VALUE(
      job.plan.kept == shape.kept,
      op, ": packed has room for ", shape.kept, " items but keep selects ", job.plan.kept);
  job.packed = packed;
  job.out_lengths = out_lengths;
  job.index = index;
  return job;
}

}  // namespace mosel

// set_python_module: where torch finds the Python fake (meta) kernels of these ops.
TORCH_LIBRARY_FRAGMENT(mosel, m) {
  m.set_python_module("mosel.ops.fake");
  m.def(
      "drop_and_pack(Tensor flat, Tensor offsets, Tensor lengths, Tensor keep, int row_elems, "
      "int frame_stride, ScalarType out_dtype, float mean, float std, int max_steps) "
      "-> (Tensor packed, Tensor out_lengths, Tensor index)");
  m.def(
      "drop_and_pack_into(Tensor flat, Tensor offsets, Tensor lengths, Tensor keep, "
      "int frame_stride, float mean, float std, Tensor(a!) packed, Tensor(b!) out_lengths, "
      "Tensor(c!) index) -> ()");
}
