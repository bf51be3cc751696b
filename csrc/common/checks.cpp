// Argument checks shared by the mosel op families (see checks.h).
#include "common/checks.h"

#include <c10/util/Exception.h>

namespace mosel {

at::Tensor host_metadata(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t expected_len,
                         const at::Tensor& data, const char* data_name, const char* op) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK_VALUE(
      t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1, op, ": ", name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK_VALUE(
      t.size(0) == expected_len,
      op, ": ", name, " has ", t.size(0), " entries, expected ", expected_len);
  TORCH_CHECK_VALUE(
      t.device().is_cpu() || t.device() == data.device(),
      op, ": ", name, " is on ", t.device(), " but ", data_name, " is on ", data.device(),
      "; pass it on the CPU (preferred) or on ", data_name, "'s device");
  return t.cpu().contiguous();
}

CpuScope enter_cpu(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK_VALUE(t.defined() && t.device().is_cpu(), op, ": ", name, " must be a CPU tensor here");
  return {};
}

}  // namespace mosel
