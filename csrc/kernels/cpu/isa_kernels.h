// Declarations of the per-ISA kernel sets that adder_conv2d_impl.inc defines.
#pragma once

#include "adder_conv2d_cpu.h"

#define ADDERNET_DECLARE_ISA(NS)                                                                \
  namespace addernet {                                                                         \
  namespace cpu {                                                                              \
  namespace NS {                                                                               \
  template <typename T> int64_t fwd_pack_size(const ConvShape&);                              \
  template <typename T> void fwd_pack(const ConvShape&, const T*, void*);                     \
  template <typename T> Algo fwd_algo(const ConvShape&, Algo);                                \
  template <typename T> int64_t fwd_items(const ConvShape&, Algo, int64_t);                   \
  template <typename T>                                                                        \
  void fwd_run(const ConvShape&, const T*, const void*, const T*, const T*, bool, T*, int64_t, \
               int64_t, Algo, int64_t, int);                                                   \
  template <typename T> int64_t bwdx_pack_size(const ConvShape&, Algo);                       \
  template <typename T> void bwdx_pack(const ConvShape&, const T*, void*, Algo);              \
  template <typename T> Algo bwdx_algo(const ConvShape&, Algo);                               \
  template <typename T> int64_t bwdx_items(const ConvShape&, Algo, int64_t);                  \
  template <typename T>                                                                        \
  void bwdx_run(const ConvShape&, const T*, const void*, const T*, T*, int64_t, int64_t,      \
                Algo, int64_t);                                                                \
  }                                                                                            \
  }                                                                                            \
  }

ADDERNET_DECLARE_ISA(portable)
#if defined(__x86_64__) || defined(_M_X64)
#define ADDERNET_X86 1
ADDERNET_DECLARE_ISA(avx2)
ADDERNET_DECLARE_ISA(avx512)
#endif
