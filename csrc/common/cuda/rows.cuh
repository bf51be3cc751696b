// Device code shared by the mosel CUDA kernels: element conversions and one generic
// "row mover" kernel. Includes only CUDA headers (and the torch-free elem_type.h).
//
// Every op here writes an output made of rows of contiguous elements; a Map says, for
// output row r, where it lives and which source row (if any) fills it; rows without a
// source are zero-filled. Blocks are 2-D: threadIdx.y picks a row of the block's row
// tile, threadIdx.x walks along the row, so each warp reads and writes one contiguous
// run (coalesced). blockDim.x >= 32 keeps a warp inside one row. Small per-item
// metadata (lengths, indices, presence flags) is written by the same launch through a
// grid-stride loop (Map::side).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "common/cuda/elem_type.h"

namespace mosel {
namespace cuda {
namespace detail {

constexpr int kThreads = 256;

// Element access. `raw` is the storage type the kernels move around (16-bit types as
// uint16_t, so vectors of them stay in registers); load/store convert through float.
template <typename T>
struct Elem;
template <>
struct Elem<uint8_t> {
  using raw = uint8_t;
  __device__ __forceinline__ static uint8_t from_raw(raw v) { return v; }
  __device__ __forceinline__ static raw to_raw(uint8_t v) { return v; }
  __device__ __forceinline__ static float load(uint8_t v) { return static_cast<float>(v); }
};
template <>
struct Elem<uint16_t> {  // a raw 16-bit pattern, for plain copies
  using raw = uint16_t;
  __device__ __forceinline__ static uint16_t from_raw(raw v) { return v; }
  __device__ __forceinline__ static raw to_raw(uint16_t v) { return v; }
};
template <>
struct Elem<float> {
  using raw = float;
  __device__ __forceinline__ static float from_raw(raw v) { return v; }
  __device__ __forceinline__ static raw to_raw(float v) { return v; }
  __device__ __forceinline__ static float load(float v) { return v; }
  __device__ __forceinline__ static float store(float v) { return v; }
};
template <>
struct Elem<__half> {
  using raw = uint16_t;
  __device__ __forceinline__ static __half from_raw(raw v) { return __ushort_as_half(v); }
  __device__ __forceinline__ static raw to_raw(__half v) { return __half_as_ushort(v); }
  __device__ __forceinline__ static float load(__half v) { return __half2float(v); }
  __device__ __forceinline__ static __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Elem<__nv_bfloat16> {
  using raw = uint16_t;
  __device__ __forceinline__ static __nv_bfloat16 from_raw(raw v) { return __ushort_as_bfloat16(v); }
  __device__ __forceinline__ static raw to_raw(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
  __device__ __forceinline__ static float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ __forceinline__ static __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

// N elements moved as one aligned access (N * sizeof(T) bytes: 4, 8 or 16).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Stores N raw elements with one access. Narrow elements are packed into one integer
// by shifts (little-endian: element 0 in the low bits) so they stay in registers.
template <typename Raw, int N>
__device__ __forceinline__ void store_vec(Raw* dst, const Raw (&v)[N]) {
  if constexpr (N == 4 && sizeof(Raw) < 4) {
    using Word = std::conditional_t<sizeof(Raw) == 1, uint32_t, unsigned long long>;
    Word w = 0;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      w |= static_cast<Word>(v[j]) << (8 * sizeof(Raw) * j);
    }
    *reinterpret_cast<Word*>(dst) = w;
  } else {
    Vec<Raw, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      o.v[j] = v[j];
    }
    *reinterpret_cast<Vec<Raw, N>*>(dst) = o;
  }
}

template <typename T>
struct Copy {
  __device__ __forceinline__ T operator()(T v) const { return v; }
};

template <typename In, typename Out>
struct Cast {
  __device__ __forceinline__ Out operator()(In v) const { return Elem<Out>::store(Elem<In>::load(v)); }
};

// (v - mean) / std in float32 (IEEE division, as torch computes it), rounded to Out.
template <typename In, typename Out>
struct Normalize {
  float mean;
  float std;
  __device__ __forceinline__ Out operator()(In v) const {
    return Elem<Out>::store((Elem<In>::load(v) - mean) / std);
  }
};

template <typename In, typename Out, int kVec, typename Map, typename Fn>
__global__ void __launch_bounds__(kThreads, 4)
    rows_kernel(const typename Elem<In>::raw* __restrict__ src, typename Elem<Out>::raw* __restrict__ dst,
                Map map, Fn fn, int64_t rows, int64_t row_vecs) {
  using InRaw = typename Elem<In>::raw;
  using OutRaw = typename Elem<Out>::raw;
  const int64_t block_threads = static_cast<int64_t>(blockDim.x) * blockDim.y;
  const int64_t block = static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t tid = block * block_threads + static_cast<int64_t>(threadIdx.y) * blockDim.x + threadIdx.x;
  const int64_t all_threads = block_threads * gridDim.x * gridDim.y;
  const int64_t side = map.side_count();
  for (int64_t i = tid; i < side; i += all_threads) {
    map.side(i);
  }

  const int64_t row_step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  const int64_t vec_step = static_cast<int64_t>(gridDim.y) * blockDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += row_step) {
    int64_t s = 0;
    int64_t d = 0;
    const bool filled = map.row(row, s, d);
    for (int64_t v = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; v < row_vecs;
         v += vec_step) {
      OutRaw o[kVec];
      if (filled) {
        const Vec<InRaw, kVec> in = *reinterpret_cast<const Vec<InRaw, kVec>*>(src + s + v * kVec);
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          o[j] = Elem<Out>::to_raw(fn(Elem<In>::from_raw(in.v[j])));
        }
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          o[j] = OutRaw(0);  // all-zero bits: +0 in every element type
        }
      }
      store_vec<OutRaw, kVec>(dst + d + v * kVec, o);
    }
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Launches rows_kernel over `rows` rows of `row_elems` elements (row_elems % 4 == 0
// when vec4). Launches even with no rows when the map has side work.
template <typename In, typename Out, typename Map, typename Fn>
cudaError_t launch_rows(const void* src, void* dst, const Map& map, const Fn& fn, int64_t rows,
                        int64_t row_elems, bool vec4, cudaStream_t stream) {
  const int64_t side = map.side_count();
  if (rows <= 0 && side <= 0) {
    return cudaSuccess;
  }
  const int vec = vec4 ? 4 : 1;
  const int64_t row_vecs = rows > 0 ? row_elems / vec : 0;
  int tx = 32;
  while (tx < kThreads && tx < row_vecs) {
    tx *= 2;
  }
  const int ty = kThreads / tx;
  int64_t gx = rows > 0 ? ceil_div(rows, ty) : ceil_div(side, kThreads);
  int64_t gy = rows > 0 ? ceil_div(row_vecs, tx) : 1;
  gx = gx < 1 ? 1 : (gx > (int64_t{1} << 30) ? (int64_t{1} << 30) : gx);  // loops cover the rest
  gy = gy < 1 ? 1 : (gy > 65535 ? 65535 : gy);
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  const dim3 block(static_cast<unsigned>(tx), static_cast<unsigned>(ty));
  const auto* s = static_cast<const typename Elem<In>::raw*>(src);
  auto* d = static_cast<typename Elem<Out>::raw*>(dst);
  if (vec4) {
    rows_kernel<In, Out, 4, Map, Fn><<<grid, block, 0, stream>>>(s, d, map, fn, rows, row_vecs);
  } else {
    rows_kernel<In, Out, 1, Map, Fn><<<grid, block, 0, stream>>>(s, d, map, fn, rows, row_vecs);
  }
  return cudaGetLastError();
}

// Calls fn(T{}) with T the device type of a float element type (Half/BFloat16/Float).
template <typename Fn>
cudaError_t with_float_type(ElemType t, const Fn& fn) {
  switch (t) {
    case ElemType::kFloat16:
      return fn(__half{});
    case ElemType::kBFloat16:
      return fn(__nv_bfloat16{});
    case ElemType::kFloat32:
      return fn(float{});
    default:
      return cudaErrorInvalidValue;
  }
}

// Calls fn(T{}) with T a storage type of the same size (a float type's raw type): a
// plain copy needs no per-type kernels beyond the element size.
template <typename Fn>
cudaError_t with_copy_type(ElemType t, const Fn& fn) {
  if (t == ElemType::kUInt8) {
    return fn(uint8_t{});
  }
  return with_float_type(t, [&](auto tag) { return fn(typename Elem<decltype(tag)>::raw{}); });
}

}  // namespace detail
}  // namespace cuda
}  // namespace mosel
