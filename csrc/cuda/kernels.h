// Launch interface of the mosel CUDA kernels: raw device pointers, plain integers and
// a cudaStream_t. No torch types, so the .cu files implementing it include only CUDA
// headers and compile (nvcc -c) on machines without a GPU or a CUDA build of torch.
// The torch glue (argument checks, allocation, the current stream) is ops_cuda.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mosel {
namespace cuda {

enum class ElemType : int32_t { kUInt8 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat32 = 3 };

// drop_and_pack: writes every element of packed [kept, steps, row_elems] and of
// out_lengths/out_index [kept]. One kernel launch.
struct PackLaunch {
  const void* flat = nullptr;  // input elements of in_type
  ElemType in_type = ElemType::kFloat32;
  void* packed = nullptr;  // output elements of out_type
  ElemType out_type = ElemType::kFloat32;
  // Device int64 [3 * kept]: element offset of each kept item's first step in flat,
  // its output length (<= steps), its request position.
  const int64_t* plan = nullptr;
  int64_t* out_lengths = nullptr;  // device int64 [kept]
  int64_t* out_index = nullptr;    // device int64 [kept]
  int64_t kept = 0;
  int64_t steps = 0;
  int64_t row_elems = 0;
  int64_t frame_stride = 1;
  // false: plain copy (in_type must equal out_type); true: (v - mean) / std in float32.
  bool normalize = true;
  float mean = 0.f;
  float std = 1.f;
  // Every row start is a multiple of 4 elements and both base pointers are aligned to
  // 4 elements: the kernel then moves 4 elements per thread with vector accesses.
  bool vec4 = false;
};

cudaError_t launch_drop_and_pack(const PackLaunch& args, cudaStream_t stream);

// scatter_back / scatter_back_into. src is [kept, dim] of src_type (Half/BFloat16/Float).
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
