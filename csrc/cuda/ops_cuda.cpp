// CUDA backend of the mosel ops: torch glue only (checks, allocation, host-to-device
// upload of the small plan, the current stream). The kernels are in drop_and_pack.cu and
// scatter_back.cu behind the plain interface of kernels.h.
//
// Metadata (offsets, lengths, keep, index) is read on the host for validation; pass it
// on the CPU (on the GPU it costs a device-to-host sync). The plan goes to the device
// with one asynchronous copy from pinned memory on the current stream, followed by one
// kernel launch on the same stream.
#include "../mosel_ops.h"
#include "kernels.h"

#include <c10/cuda/CUDAStream.h>  // c10::cuda::getCurrentCUDAStream (what at::cuda:: re-exports), without cuBLAS/cuSPARSE headers
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace mosel {
namespace {

cuda::ElemType elem_type(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kByte:
      return cuda::ElemType::kUInt8;
    case at::kHalf:
      return cuda::ElemType::kFloat16;
    case at::kBFloat16:
      return cuda::ElemType::kBFloat16;
    case at::kFloat:
      return cuda::ElemType::kFloat32;
    default:
      break;
  }
  TORCH_CHECK_VALUE(false, op, ": unsupported dtype ", t);
  return cuda::ElemType::kFloat32;  // not reached
}

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(bytes) == 0;
}

void check_cuda(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.defined() && t.is_cuda(), op, ": ", name, " must be a CUDA tensor here, got ",
                    t.defined() ? t.device().str() : std::string("undefined"));
}

// Host int64 values -> device tensor, via pinned memory and an async copy on the current stream.
at::Tensor upload(const int64_t* values, int64_t n, const at::Device& device) {
  at::Tensor host = at::empty({n}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  if (n > 0) {
    std::memcpy(host.mutable_data_ptr<int64_t>(), values, static_cast<size_t>(n) * sizeof(int64_t));
  }
  return host.to(at::TensorOptions().device(device).dtype(at::kLong), /*non_blocking=*/true);
}

void run_pack(
    const at::Tensor& flat,
    const PackPlan& plan,
    const Normalization& norm,
    const at::Tensor& packed,
    const at::Tensor& out_lengths,
    const at::Tensor& index,
    const char* op) {
  if (plan.kept == 0) {
    return;
  }
  // The plan table is [3, K] int64 in pinned memory: one async upload.
  at::Tensor plan_dev =
      plan.table.to(at::TensorOptions().device(flat.device()).dtype(at::kLong), /*non_blocking=*/true);
  cuda::PackLaunch a;
  a.flat = flat.const_data_ptr();
  a.in_type = elem_type(flat.scalar_type(), op);
  a.packed = packed.mutable_data_ptr();
  a.out_type = elem_type(packed.scalar_type(), op);
  a.plan = plan_dev.const_data_ptr<int64_t>();
  a.out_lengths = out_lengths.mutable_data_ptr<int64_t>();
  a.out_index = index.mutable_data_ptr<int64_t>();
  a.kept = plan.kept;
  a.steps = plan.steps;
  a.row_elems = plan.row_elems;
  a.frame_stride = plan.frame_stride;
  a.normalize = !norm.plain_copy;
  a.mean = norm.mean;
  a.std = norm.std;
  a.vec4 = plan.row_elems % 4 == 0 && plan.offsets_multiple_of(4) &&
      aligned(a.flat, 4 * flat.element_size()) && aligned(a.packed, 4 * packed.element_size());
  C10_CUDA_CHECK(cuda::launch_drop_and_pack(a, c10::cuda::getCurrentCUDAStream(flat.device().index())));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> drop_and_pack_cuda(
    const at::Tensor& flat,
    const at::Tensor& offsets,
    const at::Tensor& lengths,
    const at::Tensor& keep,
    int64_t row_elems,
    int64_t frame_stride,
    at::ScalarType out_dtype,
    double mean,
    double std,
    int64_t max_steps) {
  constexpr const char* op = "mosel::drop_and_pack";
  check_cuda(flat, "flat", op);
  TORCH_CHECK_VALUE(max_steps >= 0, op, ": max_steps must be >= 0 (0 = longest item), got ", max_steps);
  const c10::cuda::CUDAGuard guard(flat.device());
  const Normalization norm = check_pack_dtypes(flat.scalar_type(), out_dtype, mean, std, op);
  const PackPlan plan = plan_drop_and_pack(
      flat, offsets, lengths, keep, row_elems, frame_stride, max_steps > 0 ? max_steps : -1,
      /*pin_memory=*/true, op);
  at::Tensor packed = at::empty({plan.kept, plan.steps, plan.row_elems}, flat.options().dtype(out_dtype));
  at::Tensor out_lengths = at::empty({plan.kept}, flat.options().dtype(at::kLong));
  at::Tensor index = at::empty({plan.kept}, flat.options().dtype(at::kLong));
  run_pack(flat, plan, norm, packed, out_lengths, index, op);
  return {packed, out_lengths, index};
}

void drop_and_pack_into_cuda(
    const at::Tensor& flat,
    const at::Tensor& offsets,
    const at::Tensor& lengths,
    const at::Tensor& keep,
    int64_t frame_stride,
    double mean,
    double std,
    const at::Tensor& packed,
    const at::Tensor& out_lengths,
    const at::Tensor& index) {
  constexpr const char* op = "mosel::drop_and_pack_into";
  check_cuda(flat, "flat", op);
  const c10::cuda::CUDAGuard guard(flat.device());
  const PackedShape shape = check_pack_outputs(flat, packed, out_lengths, index, op);
  const Normalization norm = check_pack_dtypes(flat.scalar_type(), packed.scalar_type(), mean, std, op);
  const PackPlan plan = plan_drop_and_pack(
      flat, offsets, lengths, keep, shape.row_elems, frame_stride, shape.steps, /*pin_memory=*/true, op);
  TORCH_CHECK_VALUE(
      plan.kept == shape.kept,
      op, ": packed has room for ", shape.kept, " items but keep selects ", plan.kept);
  run_pack(flat, plan, norm, packed, out_lengths, index, op);
}

std::tuple<at::Tensor, at::Tensor> scatter_back_cuda(
    const at::Tensor& src, const at::Tensor& index, int64_t num_requests) {
  constexpr const char* op = "mosel::scatter_back";
  check_embedding_tensor(src, 2, "src", op);
  check_cuda(src, "src", op);
  const c10::cuda::CUDAGuard guard(src.device());
  std::vector<int64_t> inverse;
  check_scatter_index(index, src, num_requests, &inverse, op);
  const int64_t dim = src.size(1);
  at::Tensor out = at::empty({num_requests, dim}, src.options());
  at::Tensor present = at::empty({num_requests}, src.options().dtype(at::kBool));
  if (num_requests == 0) {
    return {out, present};
  }
  const at::Tensor inverse_dev = upload(inverse.data(), num_requests, src.device());
  cuda::ScatterLaunch a;
  a.src = src.const_data_ptr();
  a.src_type = elem_type(src.scalar_type(), op);
  a.out = out.mutable_data_ptr();
  a.out_type = a.src_type;
  a.present = present.mutable_data_ptr<bool>();
  a.rows = inverse_dev.const_data_ptr<int64_t>();
  a.num_rows = num_requests;
  a.kept = src.size(0);
  a.dim = dim;
  a.vec4 = dim % 4 == 0 && aligned(a.src, 4 * src.element_size()) && aligned(a.out, 4 * out.element_size());
  C10_CUDA_CHECK(cuda::launch_scatter_back(a, c10::cuda::getCurrentCUDAStream(src.device().index())));
  return {out, present};
}

void scatter_back_into_cuda(
    const at::Tensor& out,
    const at::Tensor& present,
    const at::Tensor& src,
    const at::Tensor& index,
    int64_t slot) {
  constexpr const char* op = "mosel::scatter_back_into";
  check_embedding_tensor(src, 2, "src", op);
  check_cuda(src, "src", op);
  const c10::cuda::CUDAGuard guard(src.device());
  const FusionShape shape = check_fusion_outputs(out, present, src, slot, op);
  const std::vector<int64_t> rows = check_scatter_index(index, src, shape.num_rows, nullptr, op);
  const int64_t kept = src.size(0);
  if (kept == 0) {
    return;
  }
  const at::Tensor rows_dev = upload(rows.data(), kept, src.device());
  cuda::ScatterLaunch a;
  a.src = src.const_data_ptr();
  a.src_type = elem_type(src.scalar_type(), op);
  a.out = out.mutable_data_ptr();
  a.out_type = elem_type(out.scalar_type(), op);
  a.present = present.mutable_data_ptr<bool>();
  a.rows = rows_dev.const_data_ptr<int64_t>();
  a.num_rows = shape.num_rows;
  a.kept = kept;
  a.dim = shape.dim;
  a.slots = shape.slots;
  a.slot = slot;
  a.vec4 = shape.dim % 4 == 0 && aligned(a.src, 4 * src.element_size()) &&
      aligned(a.out, 4 * out.element_size());
  C10_CUDA_CHECK(cuda::launch_scatter_into(a, c10::cuda::getCurrentCUDAStream(src.device().index())));
}

}  // namespace
}  // namespace mosel

TORCH_LIBRARY_IMPL(mosel, CUDA, m) {
  m.impl("drop_and_pack", &mosel::drop_and_pack_cuda);
  m.impl("drop_and_pack_into", &mosel::drop_and_pack_into_cuda);
  m.impl("scatter_back", &mosel::scatter_back_cuda);
  m.impl("scatter_back_into", &mosel::scatter_back_into_cuda);
}
