// Torch-side helpers shared by the mosel CUDA backends (the *_cuda.cpp files): dtype
// translation for the launch interfaces, alignment tests, the device check and the upload
// of small host tables. Header-only, so no CUDA-only translation unit is needed here.
#pragma once

#include "common/cuda/elem_type.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace mosel {
namespace cuda {

inline ElemType elem_type(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kByte:
      return ElemType::kUInt8;
    case at::kHalf:
      return ElemType::kFloat16;
    case at::kBFloat16:
      return ElemType::kBFloat16;
    case at::kFloat:
      return ElemType::kFloat32;
    default:
      break;
  }
  TORCH_CHECK_VALUE(false, op, ": unsupported dtype ", t);
  return ElemType::kFloat32;  // not reached
}

inline bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(bytes) == 0;
}

// The CUDA backends' entry: checks that `t`, the op's data tensor, is a CUDA tensor and
// makes its device current for the rest of the call (while the returned guard lives).
inline c10::cuda::CUDAGuard enter_cuda(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.defined() && t.is_cuda(), op, ": ", name, " must be a CUDA tensor here, got ",
                    t.defined() ? t.device().str() : std::string("undefined"));
  return c10::cuda::CUDAGuard(t.device());
}

// Host int64 values -> device tensor, via pinned memory and an async copy on the current stream.
inline at::Tensor upload(const int64_t* values, int64_t n, const at::Device& device) {
  at::Tensor host = at::empty({n}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  if (n > 0) {
    std::memcpy(host.mutable_data_ptr<int64_t>(), values, static_cast<size_t>(n) * sizeof(int64_t));
  }
  return host.to(at::TensorOptions().device(device).dtype(at::kLong), /*non_blocking=*/true);
}

}  // namespace cuda
}  // namespace mosel
