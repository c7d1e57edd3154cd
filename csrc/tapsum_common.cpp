#include "tapsum_common.h"

#include <string>

namespace addernet {

int tap_fn_code(c10::string_view fn, const char* name) {
  if (fn == "hardtanh") return 0;
  if (fn == "sign") return 1;
  if (fn == "mask") return 2;
  TORCH_CHECK(false, name, ": fn must be 'hardtanh', 'sign' or 'mask', got '", std::string(fn), "'");
}

void check_like(const c10::optional<at::Tensor>& t, const at::Tensor& like, const char* what,
                const char* like_what, const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->sizes() == like.sizes(), name, ": ", what, " has shape ", t->sizes(), ", expected ",
              like_what, "'s ", like.sizes());
  TORCH_CHECK(t->scalar_type() == like.scalar_type() && t->device() == like.device(), name, ": ", what,
              " (", t->scalar_type(), ", ", t->device(), ") must match ", like_what, " (",
              like.scalar_type(), ", ", like.device(), ")");
}

}  // namespace addernet
