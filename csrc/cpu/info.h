// What the CPU bindings report about themselves (not tensor ops). Defined beside the bindings
// they describe; registered in the schema file of their op, so that every schema sits in csrc/<op>.cpp.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace addernet {

// The kernel set the float CPU path runs, the environment's choices included (for `addernet info`).
std::string cpu_info();
// The patch algorithms the float32 kernels pick for one layer, "forward/input_grad" (for benchmarks).
std::string cpu_algorithms(at::IntArrayRef input, at::IntArrayRef weight, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
// The kernel set and vector width of the uint8 op.
std::string u8_info();

}  // namespace addernet
