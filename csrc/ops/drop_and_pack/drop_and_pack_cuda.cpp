// CUDA backend of mosel::drop_and_pack and mosel::drop_and_pack_into: torch glue only
// (checks, allocation, upload of the plan, the current stream); the kernel is
// drop_and_pack_kernel.cu behind drop_and_pack_kernel.h.
//
// Metadata (offsets, lengths, keep) is read on the host for validation; pass it on the
// CPU (on the GPU it costs a device-to-host sync). The plan goes to the device with one
// asynchronous copy from pinned memory on the current stream, followed by one kernel
// launch on the same stream.
#include "ops/drop_and_pack/drop_and_pack.h"
#include "ops/drop_and_pack/drop_and_pack_kernel.h"

#include "common/cuda/glue.h"

#include <c10/cuda/CUDAStream.h>  // c10::cuda::getCurrentCUDAStream (what at::cuda:: re-exports), without cuBLAS/cuSPARSE headers
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace mosel {
namespace {

// The CUDA backend of drop_and_pack_kernel / drop_and_pack_into_kernel.
struct CudaBackend {
  static constexpr bool kPinnedPlan = true;

  static c10::cuda::CUDAGuard enter(const at::Tensor& flat, const char* op) {
    return cuda::enter_cuda(flat, "flat", op);
  }

  static void run(const at::Tensor& flat, const PackJob& job, const char* op) {
    const PackPlan& plan = job.plan;
    if (plan.kept == 0) {
      return;
    }
    // The plan table is [3, K] int64 in pinned memory: one async upload.
    at::Tensor plan_dev =
        plan.table.to(at::TensorOptions().device(flat.device()).dtype(at::kLong), /*non_blocking=*/true);
    cuda::PackLaunch a;
    a.flat = flat.const_data_ptr();
    a.in_type = cuda::elem_type(flat.scalar_type(), op);
    a.packed = job.packed.mutable_data_ptr();
    a.out_type = cuda::elem_type(job.packed.scalar_type(), op);
    a.plan = plan_dev.const_data_ptr<int64_t>();
    a.out_lengths = job.out_lengths.mutable_data_ptr<int64_t>();
    a.out_index = job.index.mutable_data_ptr<int64_t>();
    a.kept = plan.kept;
    a.steps = plan.steps;
    a.row_elems = plan.row_elems;
    a.frame_stride = plan.frame_stride;
    a.normalize = !job.norm.plain_copy;
    a.mean = job.norm.mean;
    a.std = job.norm.std;
    a.vec4 = plan.row_elems % 4 == 0 && plan.offsets_multiple_of(4) &&
        cuda::aligned(a.flat, 4 * flat.element_size()) && cuda::aligned(a.packed, 4 * job.packed.element_size());
    C10_CUDA_CHECK(cuda::launch_drop_and_pack(a, c10::cuda::getCurrentCUDAStream(flat.device().index())));
  }
};

}  // namespace
}  // namespace mosel

TORCH_LIBRARY_IMPL(mosel, CUDA, m) {
  m.impl("drop_and_pack", &mosel::drop_and_pack_kernel<mosel::CudaBackend>);
  m.impl("drop_and_pack_into", &mosel::drop_and_pack_into_kernel<mosel::CudaBackend>);
}
