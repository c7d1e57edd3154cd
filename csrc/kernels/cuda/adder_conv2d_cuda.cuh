// Raw CUDA kernels for the adder convolution; no torch headers, so they build and are
// unit-tested on their own (csrc/tests/test_cuda_kernels.cu) and the binding stays thin.
//
// Every launcher takes contiguous NCHW tensors as raw device pointers, accumulates in float
// whatever T is, runs on `stream` and returns the launch status (cudaGetLastError).
// Sizes whose indices the kernels keep in 32 bits (see adder_conv2d_cuda.cu) are refused
// with cudaErrorInvalidValue instead of computing garbage.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace addernet {
namespace cuda {

// Shapes as F.conv2d: input (N, C, H, W), weight (O, C/groups, KH, KW), output (N, O, OH, OW).
struct AdderConvSizes {
  int64_t N, C, H, W;
  int64_t O, KH, KW;
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups;
  int64_t OH, OW;
};

// output = relu?(scale[o] * -sum|Xpad - W| + shift[o]); scale/shift may be null (1 and 0).
template <typename T>
cudaError_t adder_conv2d_forward(const T* input, const T* weight, const float* scale,
                                 const float* shift, bool relu, T* output,
                                 const AdderConvSizes& s, cudaStream_t stream);

// grad_input[n,c,y,x] = sum over the taps reading (y,x) of G * clamp(W - X, -1, 1).
template <typename T>
cudaError_t adder_conv2d_grad_input(const T* grad_output, const T* input, const T* weight,
                                    T* grad_input, const AdderConvSizes& s, cudaStream_t stream);

// Bytes of float scratch that adder_conv2d_grad_weight needs for its split reduction.
size_t adder_conv2d_grad_weight_workspace_bytes(const AdderConvSizes& s);

// grad_weight[o,c,u,v] = sum_{n,i,j} G * (Xpad - W), reduced deterministically.
template <typename T>
cudaError_t adder_conv2d_grad_weight(const T* grad_output, const T* input, const T* weight,
                                     float* workspace, size_t workspace_bytes, T* grad_weight,
                                     const AdderConvSizes& s, cudaStream_t stream);

// grad_weight = conv_weight_grad - W * grad_output_sum[o]: turns a cuDNN weight gradient
// (sum G*Xpad, float, shaped like the weight) into the adder one.
template <typename T>
cudaError_t adder_conv2d_grad_weight_correction(const float* conv_weight_grad,
                                                const float* grad_output_sum, const T* weight,
                                                T* grad_weight, const AdderConvSizes& s,
                                                cudaStream_t stream);

}  // namespace cuda
}  // namespace addernet
