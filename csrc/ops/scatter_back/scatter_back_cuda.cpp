// CUDA backend of mosel::scatter_back and mosel::scatter_back_into: torch glue only
// (checks, allocation, upload of the row table, the current stream); the kernels are
// scatter_back_kernel.cu behind scatter_back_kernel.h.
//
// index is read on the host for validation; pass it on the CPU (on the GPU it costs a
// device-to-host sync). The row table goes to the device with one asynchronous copy
// from pinned memory on the current stream, followed by one kernel launch on it.
#include "ops/scatter_back/scatter_back.h"
#include "ops/scatter_back/scatter_back_kernel.h"

#include "common/cuda/glue.h"

#include <c10/cuda/CUDAStream.h>  // c10::cuda::getCurrentCUDAStream (what at::cuda:: re-exports), without cuBLAS/cuSPARSE headers
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace mosel {
namespace {

// The launch fields both ops fill alike; `rows` is the device row table.
cuda::ScatterLaunch scatter_launch(const at::Tensor& src, const at::Tensor& out, const at::Tensor& present,
                                   const at::Tensor& rows, int64_t num_rows, const char* op) {
  cuda::ScatterLaunch a;
  a.src = src.const_data_ptr();
  a.src_type = cuda::elem_type(src.scalar_type(), op);
  a.out = out.mutable_data_ptr();
  a.out_type = cuda::elem_type(out.scalar_type(), op);
  a.present = present.mutable_data_ptr<bool>();
  a.rows = rows.const_data_ptr<int64_t>();
  a.num_rows = num_rows;
  a.kept = src.size(0);
  a.dim = src.size(1);
  a.vec4 = a.dim % 4 == 0 && cuda::aligned(a.src, 4 * src.element_size()) &&
      cuda::aligned(a.out, 4 * out.element_size());
  return a;
}

// The CUDA backend of scatter_back_kernel / scatter_back_into_kernel.
struct CudaBackend {
  static c10::cuda::CUDAGuard enter(const at::Tensor& src, const char* op) {
    return cuda::enter_cuda(src, "src", op);
  }

  static void scatter_back(const at::Tensor& src, const ScatterBackJob& job, const char* op) {
    const int64_t num_requests = job.out.size(0);
    if (num_requests == 0) {
      return;
    }
    const at::Tensor inverse_dev = cuda::upload(job.inverse.data(), num_requests, src.device());
    const cuda::ScatterLaunch a = scatter_launch(src, job.out, job.present, inverse_dev, num_requests, op);
    C10_CUDA_CHECK(cuda::launch_scatter_back(a, c10::cuda::getCurrentCUDAStream(src.device().index())));
  }

  static void scatter_back_into(const at::Tensor& out, const at::Tensor& present, const at::Tensor& src,
                                const ScatterIntoJob& job, int64_t slot, const char* op) {
    const int64_t kept = src.size(0);
    if (kept == 0) {
      return;
    }
    const at::Tensor rows_dev = cuda::upload(job.rows.data(), kept, src.device());
    cuda::ScatterLaunch a = scatter_launch(src, out, present, rows_dev, job.num_rows, op);
    a.slots = job.slots;
    a.slot = slot;
    C10_CUDA_CHECK(cuda::launch_scatter_into(a, c10::cuda::getCurrentCUDAStream(src.device().index())));
  }
};

}  // namespace
}  // namespace mosel

TORCH_LIBRARY_IMPL(mosel, CUDA, m) {
  m.impl("scatter_back", &mosel::scatter_back_kernel<mosel::CudaBackend>);
  m.impl("scatter_back_into", &mosel::scatter_back_into_kernel<mosel::CudaBackend>);
}
