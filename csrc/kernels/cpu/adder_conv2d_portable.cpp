// The portable build of the kernels: the compiler's baseline vectors (SSE2 on x86-64, NEON on
// AArch64), so that the default build runs on any CPU.
#include <cstdint>
#include <type_traits>

#include "bf16.h"

#define ADDERNET_ISA_NS portable
#define ADDERNET_FMA 0
#define ADDERNET_VBYTES 16
#include "adder_conv2d_impl.inc"
#include "adder_conv2d_tapsum.inc"
