// Run-time choice of the tap-sum kernel set, as dispatch.cpp does for the forward and backward.
#include "isa_kernels.h"
#include "tapsum.h"

#define ADDERNET_DECLARE_TAPSUM(NS)                                                                \
  namespace addernet {                                                                            \
  namespace cpu {                                                                                 \
  namespace NS {                                                                                  \
  template <typename T> int64_t tso_items(const ConvShape&);                                     \
  template <typename T>                                                                           \
  void tso_run(const ConvShape&, const T*, const T*, const T*, const T*, T*, TapFn, int64_t, int64_t); \
  template <typename T> int64_t tsi_items(const ConvShape&);                                     \
  template <typename T> int64_t tsi_pack_size(const ConvShape&);                                 \
  template <typename T> void tsi_pack(const ConvShape&, const T*, T*);                           \
  template <typename T>                                                                           \
  void tsi_run(const ConvShape&, const T*, const T*, const T*, T*, TapFn, int64_t, int64_t);     \
  template <typename T> int64_t tsw_chunks(const ConvShape&, int64_t);                           \
  template <typename T> int64_t tsw_items(const ConvShape&, int64_t);                            \
  template <typename T>                                                                           \
  void tsw_run(const ConvShape&, const T*, const T*, const T*, const T*, T*, TapFn, int64_t, int64_t, \
               int64_t);                                                                          \
  }                                                                                               \
  }                                                                                               \
  }

ADDERNET_DECLARE_TAPSUM(portable)
#ifdef ADDERNET_X86
ADDERNET_DECLARE_TAPSUM(avx2)
ADDERNET_DECLARE_TAPSUM(avx512)
#endif

namespace addernet {
namespace cpu {

#ifdef ADDERNET_X86
#define ADDERNET_TAPSUM_DISPATCH(isa, fn, ...)                       \
  switch (isa) {                                                     \
    case Isa::avx512: return avx512::fn<T>(__VA_ARGS__);             \
    case Isa::avx2: return avx2::fn<T>(__VA_ARGS__);                 \
    default: return portable::fn<T>(__VA_ARGS__);                    \
  }
#else
#define ADDERNET_TAPSUM_DISPATCH(isa, fn, ...) return portable::fn<T>(__VA_ARGS__);
#endif

template <typename T>
int64_t TapSums<T>::output_items(const ConvShape& s, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tso_items, s)
}
template <typename T>
void TapSums<T>::output(const ConvShape& s, const T* a, const T* b, const T* x, const T* w, T* out,
                        TapFn fn, int64_t begin, int64_t end, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tso_run, s, a, b, x, w, out, fn, begin, end)
}
template <typename T>
int64_t TapSums<T>::input_pack_size(const ConvShape& s, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsi_pack_size, s)
}
template <typename T>
void TapSums<T>::input_pack(const ConvShape& s, const T* w, T* wpack, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsi_pack, s, w, wpack)
}
template <typename T>
int64_t TapSums<T>::input_items(const ConvShape& s, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsi_items, s)
}
template <typename T>
void TapSums<T>::input(const ConvShape& s, const T* g, const T* x, const T* wpack, T* out, TapFn fn,
                       int64_t begin, int64_t end, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsi_run, s, g, x, wpack, out, fn, begin, end)
}
template <typename T>
int64_t TapSums<T>::weight_chunks(const ConvShape& s, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsw_chunks, s, o.threads)
}
template <typename T>
int64_t TapSums<T>::weight_items(const ConvShape& s, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsw_items, s, o.threads)
}
template <typename T>
void TapSums<T>::weight(const ConvShape& s, const T* g, const T* a, const T* x, const T* w, T* partial,
                        TapFn fn, int64_t begin, int64_t end, const Options& o) {
  ADDERNET_TAPSUM_DISPATCH(o.isa, tsw_run, s, g, a, x, w, partial, fn, begin, end, o.threads)
}

template struct TapSums<float>;
template struct TapSums<double>;

}  // namespace cpu
}  // namespace addernet
