// compnet's data-parallel ops over libtorch's own distributed engine, c10d: a process group with
// the Gloo backend (TCP transport) rendezvousing through a c10d TCPStore, as torch.distributed's
// `init_process_group('gloo', ...)` does. One group per process, like torch.distributed's default
// group: a collective blocks the calling (JS) thread, so one process can only ever be one rank.
//
// Declared here, defined in distributed.cc (the only file that needs gloo's headers), and called by
// the generated glue (generated/op_binding.h) like every hand-written op.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "generated/op_structs.h"

namespace compnet::binding {

// Joins the group: rank 0 serves the store, every rank checks that it agrees with rank 0 on the
// world size and that no other worker holds its rank, then Gloo connects the full mesh. Every
// wait (connecting to the master, the others joining, any later collective) ends after the timeout
// with an error instead of hanging.
void distInit(const DistInitArgs& args);
// Sums the tensors over the ranks and divides by the world size, in place: one Gloo all-reduce
// over one flat buffer (the tensors are one bucket), copied back.
void distAllReduceMean(const std::vector<at::Tensor>& tensors);
// Overwrites the tensors with rank `root`'s, in place: one broadcast over one flat buffer.
void distBroadcast(const std::vector<at::Tensor>& tensors, int64_t root);
// Returns once every rank has called it.
void distBarrier();
// Leaves the group (closes the connections and, on rank 0, the store). Safe to call when not in one.
void distDestroy();

}  // namespace compnet::binding
