// The schemas of mosel::scatter_back and mosel::scatter_back_into (declared once, here)
// and the checks both backends run before their kernels (scatter_back_cpu.cpp,
// scatter_back_cuda.cpp). Fake kernels for torch.compile: mosel/ops/fake.py.
//
// scatter_back(src, index, num_requests) -> (out, present)
//   src float16/bfloat16/float32 [K, D]; out [N, D] of src's dtype with row index[k] =
//   src[k] and zeros elsewhere, present bool[N]. index int64[K], in [0, N), no duplicates.
// scatter_back_into(out!, present!, src, index, slot) -> ()
//   out [N, M, D] (float16/bfloat16/float32, converted from src's dtype), present
//   bool[N, M]: out[index[k], slot] = src[k], present[index[k], slot] = true. Rows not
//   in index are left untouched, so several partial batches of one modality (encoder
//   replicas) can be scattered into the same slot; start from zeros/false.
//
// index lives on the CPU (preferred) or on src's device (a host sync). The ops are
// inference-only (no autograd formulas).
#include "ops/scatter_back/scatter_back.h"

#include "common/checks.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace mosel {
namespace {

// Validates `index` (int64 1-D, K entries, each in [0, num_rows), no duplicates) and
// returns its values on the host. If `inverse` is given it is filled with num_rows
// entries: the position k with index[k] == row, or -1.
std::vector<int64_t> check_scatter_index(const at::Tensor& index, const at::Tensor& src, int64_t num_rows,
                                         std::vector<int64_t>* inverse, const char* op) {
  TORCH_CHECK_VALUE(num_rows >= 0, op, ": number of rows must be >= 0, got ", num_rows);
  const at::Tensor idx_h =
      host_metadata(index, "index", at::kLong, src.size(0), src, "src", op);
  const int64_t kept = idx_h.size(0);
  const int64_t* ip = idx_h.const_data_ptr<int64_t>();
  std::vector<int64_t> local;
  std::vector<int64_t>& inv = inverse ? *inverse : local;
  inv.assign(static_cast<size_t>(num_rows), -1);
  std::vector<int64_t> values(static_cast<size_t>(kept));
  for (int64_t k = 0; k < kept; ++k) {
    const int64_t row = ip[k];
    TORCH_CHECK_VALUE(
        row >= 0 && row < num_rows,
        op, ": index[", k, "] = ", row, " is out of range for ", num_rows, " rows");
    TORCH_CHECK_VALUE(
        inv[row] < 0,
        op, ": index has duplicate value ", row, " (at positions ", inv[row], " and ", k, ")");
    inv[row] = k;
    values[k] = row;
  }
  return values;
}

// Checks scatter_back_into's out/present/slot against src; returns the shape part of the job.
ScatterIntoJob check_fusion_outputs(const at::Tensor& out, const at::Tensor& present, const at::Tensor& src,
                                    int64_t slot, const char* op) {
  check_embedding_tensor(out, 3, "out", op);
  TORCH_CHECK_VALUE(
      out.device() == src.device(),
      op, ": out is on ", out.device(), " but src is on ", src.device());
  TORCH_CHECK_VALUE(
      out.size(2) == src.size(1),
      op, ": out [N, M, D] has D = ", out.size(2), " but src has D = ", src.size(1));
  TORCH_CHECK_VALUE(!out.is_alias_of(src), op, ": out must not share memory with src");
  TORCH_CHECK_VALUE(present.defined(), op, ": present is undefined");
  TORCH_CHECK_VALUE(
      present.scalar_type() == at::kBool, op, ": present must be Bool, got ", present.scalar_type());
  TORCH_CHECK_VALUE(
      present.dim() == 2 && present.size(0) == out.size(0) && present.size(1) == out.size(1),
      op, ": present must have shape [", out.size(0), ", ", out.size(1), "], got ",
      present.sizes());
  TORCH_CHECK_VALUE(present.is_contiguous(), op, ": present must be contiguous");
  TORCH_CHECK_VALUE(
      present.device() == out.device(),
      op, ": present is on ", present.device(), " but out is on ", out.device());
  TORCH_CHECK_VALUE(
      slot >= 0 && slot < out.size(1),
      op, ": slot ", slot, " is out of range for ", out.size(1), " modality slots");
  ScatterIntoJob job;
  job.num_rows = out.size(0);
  job.slots = out.size(1);
  job.dim = out.size(2);
  return job;
}

}  // namespace

void check_embedding_tensor(const at::Tensor& t, int64_t dim, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " is undefined");
  const auto st = t.scalar_type();
  TORCH_CHECK_VALUE(
      st == at::kHalf || st == at::kBFloat16 || st == at::kFloat,
      op, ": ", name, " must be Half, BFloat16 or Float, got ", st);
  TORCH_CHECK_VALUE(
      t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got shape ", t.sizes());
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

ScatterBackJob prepare_scatter_back(const at::Tensor& src, const at::Tensor& index, int64_t num_requests,
                                    const char* op) {
  ScatterBackJob job;
  check_scatter_index(index, src, num_requests, &job.inverse, op);
  job.out = at::empty({num_requests, src.size(1)}, src.options());
  job.present = at::empty({num_requests}, src.options().dtype(at::kBool));
  return job;
}

ScatterIntoJob prepare_scatter_back_into(const at::Tensor& out, const at::Tensor& present, const at::Tensor& src,
                                         const at::Tensor& index, int64_t slot, const char* op) {
  ScatterIntoJob job = check_fusion_outputs(out, present, src, slot, op);
  job.rows = check_scatter_index(index, src, job.num_rows, nullptr, op);
  return job;
}

}  // namespace mosel

// set_python_module: where torch finds the Python fake (meta) kernels of these ops.
TORCH_LIBRARY_FRAGMENT(mosel, m) {
  m.set_python_module("mosel.ops.fake");
  m.def("scatter_back(Tensor src, Tensor index, int num_requests) -> (Tensor out, Tensor present)");
  m.def(
      "scatter_back_into(Tensor(a!) out, Tensor(b!) present, Tensor src, Tensor index, "
      "int slot) -> ()");
}
