// AVX2 build of the uint8 forward (vpsadbw on ymm: 32 taps an instruction), chosen at run time;
// the target is switched on for this file alone.
#include "adder_conv2d_u8_isa.h"

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC push_options
#pragma GCC target("avx2")
#include <immintrin.h>
#define ADDERNET_U8_NS u8_avx2
#define ADDERNET_U8_BITS 256
#include "adder_conv2d_u8_impl.inc"
#pragma GCC pop_options
#endif
