// ADDERNET_LAUNCH(kernel, grid, block, smem, stream)(args...) is kernel<<<grid, block, smem,
// stream>>>(args...) under nvcc. In the host emulation build (csrc/tests/emu/simt_emu.h, which
// defines ADDERNET_SIMT_EMU) it runs the grid on the CPU instead, with the launch site's file
// and line for its error messages, so the sources need no rewriting to be tested without a GPU.
#pragma once

#ifdef ADDERNET_SIMT_EMU
#define ADDERNET_LAUNCH(kernel, grid, block, smem, stream) \
  ::simt::launch(#kernel, __FILE__, __LINE__, kernel, grid, block, smem, stream)
#else
#define ADDERNET_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif
