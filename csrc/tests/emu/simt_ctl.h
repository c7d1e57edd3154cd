// Controls and counters of the SIMT emulation (simt_emu.h), for test drivers.
#pragma once
#include <cstdint>
#include <string>

namespace simt {

enum class Order { kForward, kReverse, kRandom };

struct Schedule {
  Order threads = Order::kForward;  // order a block's runnable threads resume in, every epoch
  Order blocks = Order::kForward;   // order the grid's blocks run in
  uint64_t seed = 1;                // for Order::kRandom (threads and blocks)
  bool check_shared = true;         // race and unwritten-read checks of shared memory
};

// What the emulator reports; each report also prints one line (the first few of each kind).
enum class Error {
  kRace,               // shared word written by one thread, read/written by another, same epoch
  kUnwrittenShared,    // shared word read before the block wrote it (it reads as NaN)
  kBarrierDivergence,  // threads of a block wait at different __syncthreads() sites
  kBarrierAfterExit,   // a barrier reached after some threads of the block returned
  kInvalidLaunch,      // a launch configuration no GPU accepts (cudaErrorInvalidConfiguration)
  kCount
};
const char* error_name(Error e);

struct Stats {
  uint64_t launches = 0, blocks = 0, threads = 0, resumes = 0, barriers = 0;
  uint64_t shared_accesses = 0;
  uint64_t errors[int(Error::kCount)] = {};
  uint64_t total_errors() const;
};

void set_schedule(const Schedule& s);
Schedule get_schedule();
Stats& stats();
std::string describe(const Schedule& s);
// Prints at most this many lines per error kind (all are counted).
void set_report_limit(int per_kind);

}  // namespace simt
