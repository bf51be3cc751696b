// Element types as the mosel CUDA kernels see them. Plain C++ (no torch, no CUDA
// headers), so the launch interfaces built on it stay compilable with `nvcc -c` alone.
#pragma once

#include <cstdint>

namespace mosel {
namespace cuda {

enum class ElemType : int32_t { kUInt8 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat32 = 3 };

}  // namespace cuda
}  // namespace mosel
