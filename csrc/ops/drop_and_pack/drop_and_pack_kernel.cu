// CUDA kernel of mosel::drop_and_pack and mosel::drop_and_pack_into (launch interface:
// drop_and_pack_kernel.h; torch glue: drop_and_pack_cuda.cpp). Includes only CUDA headers.
#include "ops/drop_and_pack/drop_and_pack_kernel.h"

#include "common/cuda/rows.cuh"

namespace mosel {
namespace cuda {
namespace {

// Output row r = (k, t) of packed [kept, steps, row_elems]: step t * frame_stride of
// kept item k while t < its output length, zeros after. Side work: out_lengths and
// out_index, copied from the plan.
struct PackMap {
  const int64_t* plan;  // [3 * kept]: src offset, out length, request position
  int64_t* out_lengths;
  int64_t* out_index;
  int64_t kept;
  int64_t steps;
  int64_t row_elems;
  int64_t step_elems;  // frame_stride * row_elems

  __device__ __forceinline__ int64_t side_count() const { return kept; }
  __device__ __forceinline__ void side(int64_t k) const {
    out_lengths[k] = plan[kept + k];
    out_index[k] = plan[2 * kept + k];
  }
  __device__ __forceinline__ bool row(int64_t r, int64_t& src, int64_t& dst) const {
    const int64_t k = r / steps;
    const int64_t t = r - k * steps;
    dst = r * row_elems;
    if (t < plan[kept + k]) {
      src = plan[k] + t * step_elems;
      return true;
    }
    return false;
  }
};

}  // namespace

cudaError_t launch_drop_and_pack(const PackLaunch& a, cudaStream_t stream) {
  using namespace detail;
  if (a.kept < 0 || a.steps < 0 || a.row_elems < 1 || a.frame_stride < 1) {
    return cudaErrorInvalidValue;
  }
  if (a.vec4 && a.row_elems % 4 != 0) {
    return cudaErrorInvalidValue;
  }
  if (a.kept == 0) {
    return cudaSuccess;
  }
  PackMap map{a.plan, a.out_lengths, a.out_index, a.kept, a.steps, a.row_elems,
              a.frame_stride * a.row_elems};
  const int64_t rows = a.kept * a.steps;
  if (!a.normalize) {
    if (a.in_type != a.out_type) {
      return cudaErrorInvalidValue;
    }
    return with_copy_type(a.in_type, [&](auto tag) {
      using T = decltype(tag);
      return launch_rows<T, T>(a.flat, a.packed, map, Copy<T>{}, rows, a.row_elems, a.vec4, stream);
    });
  }
  auto with_out = [&](auto in_tag) {
    using In = decltype(in_tag);
    return with_float_type(a.out_type, [&](auto out_tag) {
      using Out = decltype(out_tag);
      return launch_rows<In, Out>(a.flat, a.packed, map, Normalize<In, Out>{a.mean, a.std}, rows,
                                  a.row_elems, a.vec4, stream);
    });
  };
  if (a.in_type == ElemType::kUInt8) {
    return with_out(uint8_t{});
  }
  return with_float_type(a.in_type, with_out);
}

}  // namespace cuda
}  // namespace mosel
