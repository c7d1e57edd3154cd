# Source variants of the CUDA kernels built by cmake/cuda_emu.cmake (make_variant.cmake applies
# them). Each mutant injects one known bug; its ctest entry runs the emulated test on a quick
# subset and passes only if the emulator reports what the bug must produce (--expect), so the
# emulated tests cannot go blind. "index64" is not a bug: it forces the 64-bit position split
# of the tiled kernels (taken for real only past 2^31 positions) and must pass everything.
# Replacements keep the line count, so reports point at the real source lines.
#
# Per variant: _file (under csrc/kernels/cuda), _old, _new (and _old2, _new2), _args (flags of
# the float-only test_emu_kernels), _what.

set(ADDERNET_EMU_VARIANTS
  fwd_loop_sync fwd_single_buffer gin_unwritten fwd_edge gw_split_overlap tw_divergent_sync
  tw_split_sync tw_early_exit gw_table_race index64)

set(fwd_loop_sync_file adder_conv2d_cuda.cu)
set(fwd_loop_sync_what "forward: the barrier ending each k-slice dropped")
set(fwd_loop_sync_old [=[
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, AbsDiff{});
      if (more) store(buf ^ 1);
      __syncthreads();]=])
set(fwd_loop_sync_new [=[
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, AbsDiff{});
      if (more) store(buf ^ 1);
]=])
set(fwd_loop_sync_args --quick --schedules 2 --only forward --expect race,value)

set(fwd_single_buffer_file adder_conv2d_cuda.cu)
set(fwd_single_buffer_what "forward: the next slice stored into the buffer being read")
set(fwd_single_buffer_old [=[
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, AbsDiff{});
      if (more) store(buf ^ 1);]=])
set(fwd_single_buffer_new [=[
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, AbsDiff{});
      if (more) store(buf);]=])
set(fwd_single_buffer_args --quick --schedules 2 --only forward --expect race)

set(gin_unwritten_file adder_conv2d_cuda.cu)
set(gin_unwritten_what "grad input: the last A row of a shared tile left unwritten")
set(gin_unwritten_old [=[
      for (int i = 0; i < Cfg::A_PER; ++i) As[buf][a_kk][a_m + i * Cfg::A_STEP] = ra[i];
#pragma unroll
      for (int rr = 0;]=])
set(gin_unwritten_new [=[
      for (int i = 0; i + 1 < Cfg::A_PER; ++i) As[buf][a_kk][a_m + i * Cfg::A_STEP] = ra[i];
#pragma unroll
      for (int rr = 0;]=])
set(gin_unwritten_args --quick --schedules 2 --only grad_input --expect unwritten,value)

set(fwd_edge_file adder_conv2d_cuda.cu)
set(fwd_edge_what "forward: off-by-one at the right image edge")
set(fwd_edge_old [=[const bool ok = k < geo.K && in_range(ih, geo.H) && in_range(iw, geo.W);]=])
set(fwd_edge_new [=[const bool ok = k < geo.K && in_range(ih, geo.H) && in_range(iw, geo.W + 1);]=])
set(fwd_edge_args --quick --schedules 2 --only forward --expect value)

set(gw_split_overlap_file adder_conv2d_cuda.cu)
set(gw_split_overlap_what "grad weight: neighbouring splits overlap by one chunk")
set(gw_split_overlap_old [=[const int64_t c_end = total * (blockIdx.z + 1) / splits;]=])
set(gw_split_overlap_new [=[const int64_t c_end = total * (blockIdx.z + 1) / splits + (blockIdx.z + 1 < splits ? 1 : 0);]=])
set(gw_split_overlap_args --quick --schedules 2 --only grad_weight --expect value)

set(tw_divergent_sync_file adder_conv2d_tapsum.cu)
set(tw_divergent_sync_what "tapsum weight: the reduction's barrier inside its divergent branch")
set(tw_divergent_sync_old [=[
    if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();]=])
set(tw_divergent_sync_new [=[
    if (threadIdx.x < stride) { red[threadIdx.x] += red[threadIdx.x + stride]; __syncthreads(); }
]=])
# Threads past the stride skip the barrier, leave the loop and return while others wait.
set(tw_divergent_sync_args --quick --schedules 2 --only tapsum_weight --tapsum-max-blocks 600 --expect exit)

set(tw_split_sync_file adder_conv2d_tapsum.cu)
set(tw_split_sync_what "tapsum weight: one barrier per side of the reduction's branch")
set(tw_split_sync_old [=[
    if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();]=])
set(tw_split_sync_new [=[
    if (threadIdx.x < stride) { red[threadIdx.x] += red[threadIdx.x + stride]; __syncthreads(); }
    else { __syncthreads(); }]=])
set(tw_split_sync_args --quick --schedules 2 --only tapsum_weight --tapsum-max-blocks 600 --expect divergence)

set(tw_early_exit_file adder_conv2d_tapsum.cu)
set(tw_early_exit_what "tapsum weight: threads without positions return before the reduction")
set(tw_early_exit_old [=[  const float wv = ld(w + widx);]=])
set(tw_early_exit_new [=[  const float wv = ld(w + widx); if (threadIdx.x > 0 && threadIdx.x >= g.N * g.OH * g.OW) return;]=])
set(tw_early_exit_args --quick --schedules 2 --only tapsum_weight --tapsum-max-blocks 600 --expect exit)

# Every thread builds the whole tap table and the barrier after it is gone: each thread writes
# the same values, so every schedule computes the same, right, result; only the race detector
# sees that threads overwrite words others read in the same epoch.
set(gw_table_race_file adder_conv2d_cuda.cu)
set(gw_table_race_what "grad weight: tap table built by every thread, its barrier dropped")
set(gw_table_race_old [=[
  for (int col = tid; col < BN; col += Cfg::THREADS) {]=])
set(gw_table_race_new [=[
  for (int col = 0; col < BN; ++col) {]=])
set(gw_table_race_old2 [=[
    s_off[col] = int64_t(c) * geo.HW + int64_t(s_udh[col]) * geo.W + s_vdw[col];
  }
  __syncthreads();]=])
set(gw_table_race_new2 [=[
    s_off[col] = int64_t(c) * geo.HW + int64_t(s_udh[col]) * geo.W + s_vdw[col];
  }
]=])
set(gw_table_race_args --quick --schedules 2 --only grad_weight --expect race,agree,correct)

set(index64_file adder_conv2d_cuda.cu)
set(index64_what "mock: the tiled kernels split positions in 64 bits, as past 2^31 positions")
set(index64_old [=[g.pos32 = g.P <= kInt32Max && g.Q <= kInt32Max;]=])
set(index64_new [=[g.pos32 = false;]=])
set(index64_args --schedules 1 --skip tapsum)
