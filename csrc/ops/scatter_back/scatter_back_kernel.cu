// CUDA kernels of mosel::scatter_back and mosel::scatter_back_into (launch interface:
// scatter_back_kernel.h; torch glue: scatter_back_cuda.cpp). Includes only CUDA headers.
#include "ops/scatter_back/scatter_back_kernel.h"

#include "common/cuda/rows.cuh"

namespace mosel {
namespace cuda {
namespace {

// scatter_back: output row n is src row inverse[n], or zeros when inverse[n] < 0.
// Side work: present[n].
struct GatherMap {
  const int64_t* inverse;  // [num_rows]
  bool* present;           // [num_rows]
  int64_t num_rows;
  int64_t dim;

  __device__ __forceinline__ int64_t side_count() const { return num_rows; }
  __device__ __forceinline__ void side(int64_t n) const { present[n] = inverse[n] >= 0; }
  __device__ __forceinline__ bool row(int64_t n, int64_t& src, int64_t& dst) const {
    const int64_t k = inverse[n];
    dst = n * dim;
    if (k >= 0) {
      src = k * dim;
      return true;
    }
    return false;
  }
};

// scatter_back_into: src row k goes to out[index[k], slot, :] of out [N, slots, dim].
// Side work: present[index[k], slot] = true.
struct SlotMap {
  const int64_t* index;  // [kept]
  bool* present;         // [num_rows, slots]
  int64_t kept;
  int64_t dim;
  int64_t slots;
  int64_t slot;

  __device__ __forceinline__ int64_t side_count() const { return kept; }
  __device__ __forceinline__ void side(int64_t k) const { present[index[k] * slots + slot] = true; }
  __device__ __forceinline__ bool row(int64_t k, int64_t& src, int64_t& dst) const {
    src = k * dim;
    dst = (index[k] * slots + slot) * dim;
    return true;
  }
};

bool valid(const ScatterLaunch& a) {
  return a.num_rows >= 0 && a.kept >= 0 && a.dim >= 0 && a.slots >= 1 && a.slot >= 0 &&
         a.slot < a.slots && (!a.vec4 || a.dim % 4 == 0);
}

}  // namespace

cudaError_t launch_scatter_back(const ScatterLaunch& a, cudaStream_t stream) {
  using namespace detail;
  if (!valid(a) || a.src_type != a.out_type || a.src_type == ElemType::kUInt8) {
    return cudaErrorInvalidValue;
  }
  GatherMap map{a.rows, a.present, a.num_rows, a.dim};
  return with_copy_type(a.src_type, [&](auto tag) {
    using T = decltype(tag);
    return launch_rows<T, T>(a.src, a.out, map, Copy<T>{}, a.num_rows, a.dim, a.vec4, stream);
  });
}

cudaError_t launch_scatter_into(const ScatterLaunch& a, cudaStream_t stream) {
  using namespace detail;
  if (!valid(a) || a.src_type == ElemType::kUInt8 || a.out_type == ElemType::kUInt8) {
    return cudaErrorInvalidValue;
  }
  SlotMap map{a.rows, a.present, a.kept, a.dim, a.slots, a.slot};
  if (a.src_type == a.out_type) {
    return with_copy_type(a.src_type, [&](auto tag) {
      using T = decltype(tag);
      return launch_rows<T, T>(a.src, a.out, map, Copy<T>{}, a.kept, a.dim, a.vec4, stream);
    });
  }
  return with_float_type(a.src_type, [&](auto in_tag) {
    using In = decltype(in_tag);
    return with_float_type(a.out_type, [&](auto out_tag) {
      using Out = decltype(out_tag);
      return launch_rows<In, Out>(a.src, a.out, map, Cast<In, Out>{}, a.kept, a.dim, a.vec4, stream);
    });
  });
}

}  // namespace cuda
}  // namespace mosel
