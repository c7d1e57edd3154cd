// AVX-512 build of the kernels (32 vector registers, so larger micro-tiles), chosen at run time.
#include <cstdint>
#include <type_traits>

#include "bf16.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,fma")
#define ADDERNET_ISA_NS avx512
#define ADDERNET_FMA 1
#define ADDERNET_VBYTES 64
#include "adder_conv2d_impl.inc"
#include "adder_conv2d_tapsum.inc"
#pragma GCC pop_options
#endif
