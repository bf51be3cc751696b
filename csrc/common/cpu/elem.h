// Element access shared by the mosel CPU kernels: the 16-bit float conversions, the
// per-dtype storage types, dtype dispatch and the parallel grain.
//
// float16/bfloat16 are handled as raw 16-bit patterns with branch-free conversions
// (selects only), so element loops over them vectorise like loops over float.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace mosel {
namespace cpu {

// About this many elements per parallel task; below that, run on the calling thread.
constexpr int64_t kGrainElems = 32768;

// Rows of `row_elems` elements per parallel task.
inline int64_t grain_rows(int64_t row_elems) {
  return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, row_elems));
}

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

template <typename T>
const typename Elem<T>::raw* raw_in(const at::Tensor& t) {
  return static_cast<const typename Elem<T>::raw*>(t.const_data_ptr());
}

template <typename T>
typename Elem<T>::raw* raw_out(const at::Tensor& t) {
  return static_cast<typename Elem<T>::raw*>(t.mutable_data_ptr());
}

// dtype dispatch: `fn` gets a value of the torch scalar type (a tag).
#define MOSEL_CASES_EMBEDDING(...)             \
  AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)     \
  AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__) \
  AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)

// The embedding dtypes: float16, bfloat16, float32.
template <typename Fn>
void dispatch_embedding(at::ScalarType t, const Fn& fn) {
  AT_DISPATCH_SWITCH(t, "mosel(cpu)", MOSEL_CASES_EMBEDDING([&] { fn(scalar_t{}); }));
}

}  // namespace cpu
}  // namespace mosel
