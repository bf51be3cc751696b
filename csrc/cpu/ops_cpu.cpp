// CPU kernels of the mosel ops (schemas and shared checks: csrc/ops.cpp).
//
// Work is split over output rows with at::parallel_for; each row is one contiguous
// run of elements (a step of a packed item, or an embedding), so the inner loops are
// plain element loops the compiler vectorises. float16/bfloat16 are handled as raw
// 16-bit patterns with branch-free conversions (selects only), so those loops
// vectorise as well.
#include "../mosel_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <type_traits>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define MOSEL_CPU_AVX2_F16C 1
#else
#define MOSEL_CPU_AVX2_F16C 0
#endif

namespace mosel {
namespace {

// About this many elements per parallel task; below that, run on the calling thread.
constexpr int64_t kGrainElems = 32768;

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE half -> float, exact. Exponent re-bias for normal numbers; the all-ones
// exponent (inf/nan) gets the float all-ones exponent; zero/subnormal halves are
// rebuilt with one float subtraction: 2^-14 * (1 + m/1024) - 2^-14 = m * 2^-24.
inline float half_to_float(uint16_t h) {
  const uint32_t magnitude = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exponent = magnitude & 0x0f800000u;
  const uint32_t normal = magnitude + (112u << 23);
  const uint32_t special = magnitude + (224u << 23);
  const uint32_t tiny = float_bits(bits_float(magnitude + (113u << 23)) - 0x1p-14f);
  uint32_t out = exponent == 0x0f800000u ? special : normal;
  out = exponent == 0 ? tiny : out;
  return bits_float(out | ((static_cast<uint32_t>(h) & 0x8000u) << 16));
}

// float -> IEEE half, round to nearest even. Results below the smallest normal half
// are rounded by a float addition of 0.5 (whose ulp, 2^-24, is the subnormal half
// step); normal results round by adding 0xfff plus the kept lsb before the shift.
inline uint16_t float_to_half(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  const uint32_t small = float_bits(bits_float(a) + 0.5f) - 0x3f000000u;
  const uint32_t normal = (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  uint32_t h = a < 0x38800000u ? small : normal;
  h = a >= 0x477ff000u ? 0x7c00u : h;  // rounds to >= 65520: infinity
  h = a > 0x7f800000u ? 0x7e00u : h;   // nan stays (quiet) nan
  return static_cast<uint16_t>(h | sign);
}

inline float bfloat16_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

// float -> bfloat16, round to nearest even; nan stays nan (quiet bit forced).
inline uint16_t float_to_bfloat16(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (x >> 16) | 0x40u;
  return static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

// Element access by torch scalar type. `raw` is the storage type the loops use.
template <typename T>
struct Elem;
template <>
struct Elem<uint8_t> {
  using raw = uint8_t;
  static float load(raw v) { return static_cast<float>(v); }
};
template <>
struct Elem<float> {
  using raw = float;
  static float load(raw v) { return v; }
  static raw store(float v) { return v; }
};
template <>
struct Elem<c10::Half> {
  using raw = uint16_t;
  static float load(raw v) { return half_to_float(v); }
  static raw store(float v) { return float_to_half(v); }
};
template <>
struct Elem<c10::BFloat16> {
  using raw = uint16_t;
  static float load(raw v) { return bfloat16_to_float(v); }
  static raw store(float v) { return float_to_bfloat16(v); }
};

#if MOSEL_CPU_AVX2_F16C
// 8 elements at a time with AVX2 + F16C (the build uses -march=native). Compilers do
// not vectorise the bit-level 16-bit conversions above as well as the hardware
// conversions (vcvtph2ps / vcvtps2ph round to nearest even, like torch).
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

template <typename In, typename Out>
inline void convert_row(
    const typename Elem<In>::raw* __restrict src,
    typename Elem<Out>::raw* __restrict dst,
    int64_t n) {
  if constexpr (std::is_same_v<In, Out>) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(*dst));
  } else {
    for (int64_t j = 0; j < n; ++j) {
      dst[j] = Elem<Out>::store(Elem<In>::load(src[j]));
    }
  }
}

int64_t grain_rows(int64_t row_elems) {
  return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, row_elems));
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
  at::parallel_for(0, plan.kept * steps, grain_rows(row), [&](int64_t begin, int64_t end) {
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

template <typename T>
const typename Elem<T>::raw* raw_in(const at::Tensor& t) {
  return static_cast<const typename Elem<T>::raw*>(t.const_data_ptr());
}

template <typename T>
typename Elem<T>::raw* raw_out(const at::Tensor& t) {
  return static_cast<typename Elem<T>::raw*>(t.mutable_data_ptr());
}

// Byte-exact copy of rows of `elem` bytes each, for the plain-copy case.
void pack_copy(const at::Tensor& flat, const PackPlan& plan, const at::Tensor& packed) {
  const size_t elem = flat.element_size();
  const auto* src = static_cast<const char*>(flat.const_data_ptr());
  auto* dst = static_cast<char*>(packed.mutable_data_ptr());
  const int64_t row = plan.row_elems;
  const int64_t steps = plan.steps;
  const int64_t* src_offset = plan.src_offset();
  const int64_t* out_length = plan.out_length();
  const size_t row_bytes = static_cast<size_t>(row) * elem;
  const size_t step_bytes = static_cast<size_t>(plan.frame_stride) * row_bytes;
  at::parallel_for(0, plan.kept * steps, grain_rows(row), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t k = r / steps;
      const int64_t t = r - k * steps;
      char* d = dst + static_cast<size_t>(r) * row_bytes;
      if (t < out_length[k]) {
        std::memcpy(d, src + static_cast<size_t>(src_offset[k]) * elem + t * step_bytes, row_bytes);
      } else {
        std::memset(d, 0, row_bytes);
      }
    }
  });
}

// dtype dispatch: `fn` gets a value of the torch scalar type (a tag).
#define MOSEL_CASES_EMBEDDING(...)                 \
  AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)         \
  AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__)     \
  AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)

template <typename Fn>
void dispatch_embedding(at::ScalarType t, const Fn& fn) {
  AT_DISPATCH_SWITCH(t, "mosel(cpu)", MOSEL_CASES_EMBEDDING([&] { fn(scalar_t{}); }));
}

template <typename Fn>
void dispatch_pack_input(at::ScalarType t, const Fn& fn) {
  AT_DISPATCH_SWITCH(
      t, "mosel(cpu)",
      AT_DISPATCH_CASE(at::kByte, [&] { fn(scalar_t{}); }) MOSEL_CASES_EMBEDDING([&] { fn(scalar_t{}); }));
}

void run_pack(
    const at::Tensor& flat,
    const PackPlan& plan,
    const Normalization& norm,
    const at::Tensor& packed,
    const at::Tensor& out_lengths,
    const at::Tensor& index) {
  const int64_t kept = plan.kept;
  if (kept > 0) {
    std::memcpy(out_lengths.mutable_data_ptr<int64_t>(), plan.out_length(), kept * sizeof(int64_t));
    std::memcpy(index.mutable_data_ptr<int64_t>(), plan.index(), kept * sizeof(int64_t));
  }
  if (kept == 0 || plan.steps == 0) {
    return;
  }
  if (norm.plain_copy) {
    pack_copy(flat, plan, packed);
    return;
  }
  const float mean = norm.mean;
  const float std = norm.std;
  dispatch_pack_input(flat.scalar_type(), [&](auto in_tag) {
    dispatch_embedding(packed.scalar_type(), [&](auto out_tag) {
      using in_t = decltype(in_tag);
      using out_t = decltype(out_tag);
      pack_rows(raw_in<in_t>(flat), raw_out<out_t>(packed), plan,
                [&](const typename Elem<in_t>::raw* s, typename Elem<out_t>::raw* d, int64_t n) {
                  normalize_row<in_t, out_t>(s, d, n, mean, std);
                });
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> drop_and_pack_cpu(
    const at::Tensor& flat,
    const at::Tensor& offsets,
    const at::Tensor& lengths,
    const at::Tensor& keep,
    int64_t row_elems,
    int64_t frame_stride,
    at::ScalarType out_dtype,
    double mean,
    double std,
    int64_t max_steps) {
  constexpr const char* op = "mosel::drop_and_pack";
  TORCH_CHECK_VALUE(max_steps >= 0, op, ": max_steps must be >= 0 (0 = longest item), got ", max_steps);
  TORCH_CHECK_VALUE(flat.defined() && flat.device().is_cpu(), op, ": flat must be a CPU tensor here");
  const Normalization norm = check_pack_dtypes(flat.scalar_type(), out_dtype, mean, std, op);
  const PackPlan plan = plan_drop_and_pack(
      flat, offsets, lengths, keep, row_elems, frame_stride, max_steps > 0 ? max_steps : -1,
      /*pin_memory=*/false, op);
  at::Tensor packed = at::empty({plan.kept, plan.steps, plan.row_elems}, flat.options().dtype(out_dtype));
  at::Tensor out_lengths = at::empty({plan.kept}, flat.options().dtype(at::kLong));
  at::Tensor index = at::empty({plan.kept}, flat.options().dtype(at::kLong));
  run_pack(flat, plan, norm, packed, out_lengths, index);
  return {packed, out_lengths, index};
}

void drop_and_pack_into_cpu(
    const at::Tensor& flat,
    const at::Tensor& offsets,
    const at::Tensor& lengths,
    const at::Tensor& keep,
    int64_t frame_stride,
    double mean,
    double std,
    const at::Tensor& packed,
    const at::Tensor& out_lengths,
    const at::Tensor& index) {
  constexpr const char* op = "mosel::drop_and_pack_into";
  TORCH_CHECK_VALUE(flat.defined() && flat.device().is_cpu(), op, ": flat must be a CPU tensor here");
  const PackedShape shape = check_pack_outputs(flat, packed, out_lengths, index, op);
  const Normalization norm = check_pack_dtypes(flat.scalar_type(), packed.scalar_type(), mean, std, op);
  const PackPlan plan = plan_drop_and_pack(
      flat, offsets, lengths, keep, shape.row_elems, frame_stride, shape.steps,
      /*pin_memory=*/false, op);
  TORCH_CHECK_VALUE(
      plan.kept == shape.kept,
      op, ": packed has room for ", shape.kept, " items but keep selects ", plan.kept);
  run_pack(flat, plan, norm, packed, out_lengths, index);
}

std::tuple<at::Tensor, at::Tensor> scatter_back_cpu(
    const at::Tensor& src, const at::Tensor& index, int64_t num_requests) {
  constexpr const char* op = "mosel::scatter_back";
  check_embedding_tensor(src, 2, "src", op);
  TORCH_CHECK_VALUE(src.device().is_cpu(), op, ": src must be a CPU tensor here");
  std::vector<int64_t> inverse;
  check_scatter_index(index, src, num_requests, &inverse, op);
  const int64_t dim = src.size(1);
  at::Tensor out = at::empty({num_requests, dim}, src.options());
  at::Tensor present = at::empty({num_requests}, src.options().dtype(at::kBool));
  bool* pp = present.mutable_data_ptr<bool>();
  for (int64_t n = 0; n < num_requests; ++n) {
    pp[n] = inverse[n] >= 0;
  }
  if (num_requests == 0 || dim == 0) {
    return {out, present};
  }
  const int64_t* inv = inverse.data();
  dispatch_embedding(src.scalar_type(), [&](auto tag) {
    using in_t = decltype(tag);
    using out_t = decltype(tag);
    const auto* s = raw_in<in_t>(src);
    auto* d = raw_out<out_t>(out);
    at::parallel_for(0, num_requests, grain_rows(dim), [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        if (inv[n] >= 0) {
          convert_row<in_t, out_t>(s + inv[n] * dim, d + n * dim, dim);
        } else {
          std::memset(d + n * dim, 0, static_cast<size_t>(dim) * sizeof(*d));
        }
      }
    });
  });
  return {out, present};
}

void scatter_back_into_cpu(
    const at::Tensor& out,
    const at::Tensor& present,
    const at::Tensor& src,
    const at::Tensor& index,
    int64_t slot) {
  constexpr const char* op = "mosel::scatter_back_into";
  check_embedding_tensor(src, 2, "src", op);
  TORCH_CHECK_VALUE(src.device().is_cpu(), op, ": src must be a CPU tensor here");
  const FusionShape shape = check_fusion_outputs(out, present, src, slot, op);
  const std::vector<int64_t> rows = check_scatter_index(index, src, shape.num_rows, nullptr, op);
  const int64_t kept = src.size(0);
  const int64_t dim = shape.dim;
  const int64_t slots = shape.slots;
  bool* pp = present.mutable_data_ptr<bool>();
  for (int64_t k = 0; k < kept; ++k) {
    pp[rows[k] * slots + slot] = true;
  }
  if (kept == 0 || dim == 0) {
    return;
  }
  const int64_t* rp = rows.data();
  dispatch_embedding(src.scalar_type(), [&](auto in_tag) {
    dispatch_embedding(out.scalar_type(), [&](auto out_tag) {
      using in_t = decltype(in_tag);
      using out_t = decltype(out_tag);
      const auto* s = raw_in<in_t>(src);
      auto* d = raw_out<out_t>(out);
      at::parallel_for(0, kept, grain_rows(dim), [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          convert_row<in_t, out_t>(s + k * dim, d + (rp[k] * slots + slot) * dim, dim);
        }
      });
    });
  });
}

}  // namespace
}  // namespace mosel

TORCH_LIBRARY_IMPL(mosel, CPU, m) {
  m.impl("drop_and_pack", &mosel::drop_and_pack_cpu);
  m.impl("drop_and_pack_into", &mosel::drop_and_pack_into_cpu);
  m.impl("scatter_back", &mosel::scatter_back_cpu);
  m.impl("scatter_back_into", &mosel::scatter_back_into_cpu);
}
