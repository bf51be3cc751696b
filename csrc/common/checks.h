// Argument checks that more than one mosel op family uses (implemented in checks.cpp).
//
// Bad arguments raise c10::ValueError (Python ValueError) through TORCH_CHECK_VALUE.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mosel {

// Small metadata tensors (offsets, lengths, keep, index): checks that `t` is a 1-D
// tensor of `dtype` with `expected_len` entries on the CPU or on `data`'s device, and
// returns it as a contiguous CPU tensor (copying from a device synchronises).
at::Tensor host_metadata(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t expected_len,
                         const at::Tensor& data, const char* data_name, const char* op);

// What a CPU kernel holds for the call: nothing (a CUDA kernel holds a device guard).
struct CpuScope {};

// The CPU backends' entry: checks that `t`, the op's data tensor, is on the CPU.
CpuScope enter_cpu(const at::Tensor& t, const char* name, const char* op);

}  // namespace mosel
