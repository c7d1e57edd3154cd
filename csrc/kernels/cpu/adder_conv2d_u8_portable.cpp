// The portable build of the uint8 forward: plain C++, which the compiler vectorises with the
// baseline ISA (psadbw on x86-64 SSE2), so the default build runs on any CPU.
#include "adder_conv2d_u8_isa.h"

#define ADDERNET_U8_NS u8_portable
#define ADDERNET_U8_BITS 0
#include "adder_conv2d_u8_impl.inc"
