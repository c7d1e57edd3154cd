// What the scheduler (simt_scheduler.cpp) and the shared-memory checker (simt_shared.cpp) share.
#pragma once
#include <cstdint>

#include "simt_ctl.h"
#include "simt_emu.h"

namespace simt::detail {

constexpr uint32_t kNoThread = ~0u;

// The running fiber's linear thread index in its block, kNoThread outside a kernel.
extern uint32_t g_thread;
// Bumped at every block start and barrier release: accesses with equal epochs are unordered.
extern uint32_t g_epoch;
// Bumped at every block start: a shared word the block has not written is stale.
extern uint32_t g_block_serial;
extern const LaunchCfg* g_launch;
extern Schedule g_schedule;
// Where the current epoch began: the barrier's file and line (null at block start).
extern const char* g_epoch_file;
extern int g_epoch_line;

// Counts an error and prints its line unless this kind is past the report limit.
void report(Error kind, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Counts an error without printing; true when report() would print it (then call that).
bool count_unless_printed(Error kind);
// "(x,y,z)" of linear thread t in the current block.
const char* thread_name(uint32_t t, char (&buf)[48]);

}  // namespace simt::detail
