// AVX-512BW build of the uint8 forward (vpsadbw on zmm: 64 taps an instruction), chosen at run time.
#include "adder_conv2d_u8_isa.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2")
// GCC 12's own unpack intrinsics pass an "undefined" vector it then warns about (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define ADDERNET_U8_NS u8_avx512
#define ADDERNET_U8_BITS 512
#include "adder_conv2d_u8_impl.inc"
#pragma GCC pop_options
#endif
