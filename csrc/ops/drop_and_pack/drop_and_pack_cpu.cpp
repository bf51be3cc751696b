// CPU kernels of mosel::drop_and_pack and mosel::drop_and_pack_into (schemas and
// checks: drop_and_pack.cpp).
//
// Work is split over output rows with at::parallel_for; each row is one step of a
// packed item, a contiguous run of elements, so the inner loops are plain element
// loops the compiler vectorises (16-bit floats too: see common/cpu/elem.h).
#include "ops/drop_and_pack/drop_and_pack.h"

#include "common/checks.h"
#include "common/cpu/elem.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <type_traits>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define MOSEL_CPU_AVX2_F16C 1
#else
#define MOSEL_CPU_AVX2_F16C 0
#endif

namespace mosel {
namespace {

using cpu::Elem;

#if MOSEL_CPU_AVX2_F16C
// 8 elements at a time with AVX2 + F16C (the build uses -march=native). Compilers do
// not vectorise the bit-level 16-bit conversions of common/cpu/elem.h as well as the
// hardware conversions (vcvtph2ps / vcvtps2ph round to nearest even, like torch).
template <typename T>
inline __m256 load8(const typename Elem<T>::raw* p) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  } else if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {  // bfloat16: the upper half of a float32
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
}

template <typename T>
inline void store8(typename Elem<T>::raw* p, __m256 v) {
  if constexpr (std::is_same_v<T, float>) {
    _mm256_storeu_ps(p, v);
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {  // bfloat16, round to nearest even; nan -> quiet nan
    const __m256i x = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    const __m256i r = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quiet), is_nan));
    // 8 x u32 (each <= 0xffff) -> 8 x u16; packus works per 128-bit lane, permute fixes the order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
}

template <typename In, typename Out>
constexpr bool kUseIntrinsics = (std::is_same_v<In, c10::Half> || std::is_same_v<In, c10::BFloat16> ||
                                 std::is_same_v<Out, c10::Half> || std::is_same_v<Out, c10::BFloat16>);
#endif

template <typename In, typename Out>
inline void normalize_row(
    const typename Elem<In>::raw* __restrict src,
    typename Elem<Out>::raw* __restrict dst,
    int64_t n,
    float mean,
    float std) {
  int64_t j = 0;
#if MOSEL_CPU_AVX2_F16C
  if constexpr (kUseIntrinsics<In, Out>) {
    const __m256 vmean = _mm256_set1_ps(mean);
    const __m256 vstd = _mm256_set1_ps(std);
    for (; j + 8 <= n; j += 8) {
      store8<Out>(dst + j, _mm256_div_ps(_mm256_sub_ps(load8<In>(src + j), vmean), vstd));
    }
  }
#endif
  for (; j < n; ++j) {
    dst[j] = Elem<Out>::store((Elem<In>::load(src[j]) - mean) / std);
  }
}

// Writes every row of packed [K, L, R]: row (k, t) is step t*stride of kept item k
// while t < out_length[k], zeros after. `row_fn(src, dst, n)` converts one row.
template <typename InRaw, typename OutRaw, typename RowFn>
void pack_rows(const InRaw* flat, OutRaw* out, const PackPlan& plan, const RowFn& row_fn) {
  const int64_t steps = plan.steps;
  const int64_t row = plan.row_elems;
  const int64_t step_elems = plan.frame_stride * row;
  const int64_t* src_offset = plan.src_offset();
  const int64_t* out_length = plan.out_length();
  at::parallel_for(0, plan.kept * steps, cpu::grain_rows(row), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t k = r / steps;
      const int64_t t = r - k * steps;
      OutRaw* dst = out + r * row;
      if (t < out_length[k]) {
        row_fn(flat + src_offset[k] + t * step_elems, dst, row);
      } else {
        std::memset(dst, 0, static_cast<size_t>(row) * sizeof(OutRaw));  // 0 bits == +0
      }
    }
  });
}

// Byte-exact copy of the kept rows, for the plain-copy case: rows of a storage type of
// the input's element size.
void pack_copy(const at::Tensor& flat, const PackPlan& plan, const at::Tensor& packed) {
  auto copy = [&](auto tag) {
    using T = decltype(tag);
    pack_rows(static_cast<const T*>(flat.const_data_ptr()), static_cast<T*>(packed.mutable_data_ptr()), plan,
              [](const T* s, T* d, int64_t n) { std::memcpy(d, s, static_cast<size_t>(n) * sizeof(T)); });
  };
  switch (flat.element_size()) {
    case 1:
      return copy(uint8_t{});
    case 2:
      return copy(uint16_t{});
    default:
      return copy(uint32_t{});
  }
}

template <typename Fn>
void dispatch_pack_input(at::ScalarType t, const Fn& fn) {
  AT_DISPATCH_SWITCH(
      t, "mosel(cpu)",
      AT_DISPATCH_CASE(at::kByte, [&] { fn(scalar_t{}); }) MOSEL_CASES_EMBEDDING([&] { fn(scalar_t{}); }));
}

// The CPU backend of drop_and_pack_kernel / drop_and_pack_into_kernel.
struct CpuBackend {
  static constexpr bool kPinnedPlan = false;

  static CpuScope enter(const at::Tensor& flat, const char* op) { return enter_cpu(flat, "flat", op); }

  static void run(const at::Tensor& flat, const PackJob& job, const char* /*op*/) {
    const PackPlan& plan = job.plan;
    const int64_t kept = plan.kept;
    if (kept > 0) {
      std::memcpy(job.out_lengths.mutable_data_ptr<int64_t>(), plan.out_length(), kept * sizeof(int64_t));
      std::memcpy(job.index.mutable_data_ptr<int64_t>(), plan.index(), kept * sizeof(int64_t));
    }
    if (kept == 0 || plan.steps == 0) {
      return;
    }
    if (job.norm.plain_copy) {
      pack_copy(flat, plan, job.packed);
      return;
    }
    const float mean = job.norm.mean;
    const float std = job.norm.std;
    dispatch_pack_input(flat.scalar_type(), [&](auto in_tag) {
      cpu::dispatch_embedding(job.packed.scalar_type(), [&](auto out_tag) {
        using in_t = decltype(in_tag);
        using out_t = decltype(out_tag);
        pack_rows(cpu::raw_in<in_t>(flat), cpu::raw_out<out_t>(job.packed), plan,
                  [&](const typename Elem<in_t>::raw* s, typename Elem<out_t>::raw* d, int64_t n) {
                    normalize_row<in_t, out_t>(s, d, n, mean, std);
                  });
      });
    });
  }
};

}  // namespace
}  // namespace mosel

TORCH_LIBRARY_IMPL(mosel, CPU, m) {
  m.impl("drop_and_pack", &mosel::drop_and_pack_kernel<mosel::CpuBackend>);
  m.impl("drop_and_pack_into", &mosel::drop_and_pack_into_kernel<mosel::CpuBackend>);
}
