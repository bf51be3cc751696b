// Launch interface of the mosel::scatter_back / scatter_back_into CUDA kernels: raw
// device pointers, plain integers and a cudaStream_t. No torch types, so
// scatter_back_kernel.cu includes only CUDA headers and compiles (nvcc -c) on machines
// without a GPU or a CUDA build of torch. The torch glue is scatter_back_cuda.cpp.
#pragma once

#include "common/cuda/elem_type.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mosel {
namespace cuda {

// src is [kept, dim] of src_type (Half/BFloat16/Float).
struct ScatterLaunch {
  const void* src = nullptr;
  ElemType src_type = ElemType::kFloat32;
  void* out = nullptr;  // scatter_back: [num_rows, dim]; into: [num_rows, slots, dim]
  ElemType out_type = ElemType::kFloat32;
  bool* present = nullptr;  // scatter_back: [num_rows]; into: [num_rows, slots]
  // scatter_back: device int64 [num_rows], the src row of each output row or -1.
  // scatter_back_into: device int64 [kept], the output row of each src row.
  const int64_t* rows = nullptr;
  int64_t num_rows = 0;
  int64_t kept = 0;
  int64_t dim = 0;
  int64_t slots = 1;
  int64_t slot = 0;
  bool vec4 = false;  // dim % 4 == 0 and both base pointers aligned to 4 elements
};

// Writes all of out [num_rows, dim] (zeros for absent rows) and present [num_rows];
// out_type must equal src_type.
cudaError_t launch_scatter_back(const ScatterLaunch& args, cudaStream_t stream);
// Writes out[rows[k], slot, :] (converted to out_type) and present[rows[k], slot] = true.
cudaError_t launch_scatter_into(const ScatterLaunch& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace mosel
