// CPU kernels of mosel::scatter_back and mosel::scatter_back_into (schemas and checks:
// scatter_back.cpp).
//
// Work is split over embedding rows with at::parallel_for; a row is D contiguous
// elements, copied or converted by a plain element loop (see common/cpu/elem.h).
#include "ops/scatter_back/scatter_back.h"

#include "common/checks.h"
#include "common/cpu/elem.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <type_traits>

namespace mosel {
namespace {

using cpu::Elem;

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

// The CPU backend of scatter_back_kernel / scatter_back_into_kernel.
struct CpuBackend {
  static CpuScope enter(const at::Tensor& src, const char* op) { return enter_cpu(src, "src", op); }

  static void scatter_back(const at::Tensor& src, const ScatterBackJob& job, const char* /*op*/) {
    const int64_t num_requests = job.out.size(0);
    const int64_t dim = src.size(1);
    bool* pp = job.present.mutable_data_ptr<bool>();
    for (int64_t n = 0; n < num_requests; ++n) {
      pp[n] = job.inverse[n] >= 0;
    }
    if (num_requests == 0 || dim == 0) {
      return;
    }
    const int64_t* inv = job.inverse.data();
    cpu::dispatch_embedding(src.scalar_type(), [&](auto tag) {
      using in_t = decltype(tag);
      using out_t = decltype(tag);
      const auto* s = cpu::raw_in<in_t>(src);
      auto* d = cpu::raw_out<out_t>(job.out);
      at::parallel_for(0, num_requests, cpu::grain_rows(dim), [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
          if (inv[n] >= 0) {
            convert_row<in_t, out_t>(s + inv[n] * dim, d + n * dim, dim);
          } else {
            std::memset(d + n * dim, 0, static_cast<size_t>(dim) * sizeof(*d));
          }
        }
      });
    });
  }

  static void scatter_back_into(const at::Tensor& out, const at::Tensor& present, const at::Tensor& src,
                                const ScatterIntoJob& job, int64_t slot, const char* /*op*/) {
    const int64_t kept = src.size(0);
    const int64_t dim = job.dim;
    const int64_t slots = job.slots;
    bool* pp = present.mutable_data_ptr<bool>();
    for (int64_t k = 0; k < kept; ++k) {
      pp[job.rows[k] * slots + slot] = true;
    }
    if (kept == 0 || dim == 0) {
      return;
    }
    const int64_t* rp = job.rows.data();
    cpu::dispatch_embedding(src.scalar_type(), [&](auto in_tag) {
      cpu::dispatch_embedding(out.scalar_type(), [&](auto out_tag) {
        using in_t = decltype(in_tag);
        using out_t = decltype(out_tag);
        const auto* s = cpu::raw_in<in_t>(src);
        auto* d = cpu::raw_out<out_t>(out);
        at::parallel_for(0, kept, cpu::grain_rows(dim), [&](int64_t begin, int64_t end) {
          for (int64_t k = begin; k < end; ++k) {
            convert_row<in_t, out_t>(s + k * dim, d + (rp[k] * slots + slot) * dim, dim);
          }
        });
      });
    });
  }
};

}  // namespace
}  // namespace mosel

TORCH_LIBRARY_IMPL(mosel, CPU, m) {
  m.impl("scatter_back", &mosel::scatter_back_kernel<mosel::CpuBackend>);
  m.impl("scatter_back_into", &mosel::scatter_back_into_kernel<mosel::CpuBackend>);
}
