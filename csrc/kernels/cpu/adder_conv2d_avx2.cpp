// AVX2 + FMA build of the kernels, chosen at run time; the target is switched on for this file
// alone so that the library as a whole still runs on CPUs without it.
#include <cstdint>
#include <type_traits>

#include "bf16.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ADDERNET_ISA_NS avx2
#define ADDERNET_FMA 1
#define ADDERNET_VBYTES 32
#include "adder_conv2d_impl.inc"
#include "adder_conv2d_tapsum.inc"
#pragma GCC pop_options
#endif
