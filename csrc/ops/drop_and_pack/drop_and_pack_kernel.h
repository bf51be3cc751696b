// Launch interface of the mosel::drop_and_pack CUDA kernel: raw device pointers, plain
// integers and a cudaStream_t. No torch types, so drop_and_pack_kernel.cu includes only
// CUDA headers and compiles (nvcc -c) on machines without a GPU or a CUDA build of torch.
// The torch glue (argument checks, allocation, the current stream) is drop_and_pack_cuda.cpp.
#pragma once

#include "common/cuda/elem_type.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace mosel {
namespace cuda {

// Writes every element of packed [kept, steps, row_elems] and of out_lengths/out_index
// [kept]. One kernel launch.
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

}  // namespace cuda
}  // namespace mosel
