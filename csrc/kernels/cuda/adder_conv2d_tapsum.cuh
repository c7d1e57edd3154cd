// Raw CUDA kernels of the three tap sums (the CPU ones are csrc/kernels/cpu/tapsum.h, which
// states them; addernet/backends/grad2.py builds the second-order gradients from them). Plain,
// deterministic kernels: one thread per output element (output and input sums; the input sum
// gathers the taps reading each pixel, as the input-gradient kernel does), one block per weight
// element reducing over positions in shared memory. Indices are 64-bit, sums float.
// fn: 0 = hardtanh, 1 = sign, 2 = mask. a and b may be null (see tapsum.h).
#pragma once

#include "adder_conv2d_cuda.cuh"

namespace addernet {
namespace cuda {

template <typename T>
cudaError_t adder_conv2d_tapsum_output(const T* a, const T* b, const T* input, const T* weight, T* out,
                                       int fn, const AdderConvSizes& s, cudaStream_t stream);

template <typename T>
cudaError_t adder_conv2d_tapsum_input(const T* grad_output, const T* input, const T* weight, T* out,
                                      int fn, const AdderConvSizes& s, cudaStream_t stream);

template <typename T>
cudaError_t adder_conv2d_tapsum_weight(const T* grad_output, const T* a, const T* input, const T* weight,
                                       T* out, int fn, const AdderConvSizes& s, cudaStream_t stream);

}  // namespace cuda
}  // namespace addernet
