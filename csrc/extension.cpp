// The Python module addernet._C and the root of the `addernet` operator library. The module is
// empty: importing it runs the static registrations of every schema file (csrc/<op>.cpp, library
// fragments) and binding (csrc/{cpu,cuda}/*_binding.*).
#include <Python.h>
#include <torch/library.h>

#include <string>

namespace {
std::string build_info() {
  std::string s = "compiler=";
#if defined(__clang__)
  s += "clang-" __clang_version__;
#elif defined(__GNUC__)
  s += "gcc-" __VERSION__;
#endif
#if defined(ADDERNET_WITH_CUDA) && ADDERNET_WITH_CUDA
  s += " cuda=yes";
#else
  s += " cuda=no";
#endif
#if defined(ADDERNET_MARCH_NATIVE) && ADDERNET_MARCH_NATIVE
  s += " march=native";
#else
  s += " march=portable(runtime ISA dispatch)";
#endif
#if defined(ADDERNET_OPENMP) && ADDERNET_OPENMP
  s += " openmp=yes";
#else
  s += " openmp=no";
#endif
  return s;
}
}  // namespace

// Importing addernet._C runs the static registrations below; the module itself is empty.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}


TORCH_LIBRARY(addernet, m) {
  // Not a tensor op: the flags this extension was compiled with, for `addernet info`.
  m.def("_build_info() -> str", &build_info);
}
