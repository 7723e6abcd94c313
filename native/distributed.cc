// The data-parallel ops (declared and documented in distributed.h) over c10d's ProcessGroupGloo
// and TCPStore, as Debian's libtorch 1.13 exports them from libtorch_cpu; gloo's own headers come
// from Debian's libgloo-dev (the same gloo that libtorch_cpu links).
#include "distributed.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

namespace compnet::binding {

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int64_t rank = 0;
  int64_t worldSize = 1;
  std::chrono::milliseconds timeout{0};
};
std::unique_ptr<Group> g_group;

Group& group(const char* what) {
  if (!g_group) throw std::logic_error(std::string(what) + ": this process has not joined a process group (distInit)");
  return *g_group;
}

// An exception's message without libtorch's C++ backtrace (c10::Error appends one to what()).
std::string message(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

// Waits for a collective; a failure (a peer gone, the timeout) is rethrown with the rank that saw it.
void finish(const c10::intrusive_ptr<c10d::Work>& work, const Group& g, const char* what) {
  try {
    work->wait(g.timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(g.rank) + " of " + std::to_string(g.worldSize) +
                             " (another worker died, or did not reach the same step within " + std::to_string(g.timeout.count()) +
                             " ms): " + message(e));
  }
}

// The tensors as one contiguous buffer (they must share a dtype), and a copy back into them.
at::Tensor flatten(const std::vector<at::Tensor>& ts, const char* what) {
  if (ts.empty()) throw std::invalid_argument(std::string(what) + ": no tensors");
  std::vector<at::Tensor> flat;
  flat.reserve(ts.size());
  for (const auto& t : ts) {
    if (t.scalar_type() != ts[0].scalar_type())
      throw std::invalid_argument(std::string(what) + ": the tensors of one bucket must share a dtype (" + c10::toString(ts[0].scalar_type()) +
                                  " and " + c10::toString(t.scalar_type()) + ")");
    flat.push_back(t.detach().reshape({-1}));
  }
  return at::cat(flat);
}
void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& ts) {
  at::NoGradGuard noGrad;
  int64_t at = 0;
  for (const auto& t : ts) {
    const int64_t n = t.numel();
    t.detach().copy_(flat.narrow(0, at, n).view(t.sizes()));
    at += n;
  }
}

}  // namespace

void distInit(const DistInitArgs& a) {
  if (g_group) throw std::logic_error("this process already joined a process group (rank " + std::to_string(g_group->rank) + "); distDestroy first");
  if (a.worldSize < 1) throw std::invalid_argument("world size must be at least 1, got " + std::to_string(a.worldSize));
  if (a.rank < 0 || a.rank >= a.worldSize)
    throw std::invalid_argument("rank must be in 0.." + std::to_string(a.worldSize - 1) + " for world size " + std::to_string(a.worldSize) + ", got " + std::to_string(a.rank));
  if (a.masterPort < 1 || a.masterPort > 65535) throw std::invalid_argument("master port must be in 1..65535, got " + std::to_string(a.masterPort));
  if (a.timeoutMs < 1) throw std::invalid_argument("timeout must be at least 1 ms");
  const std::chrono::milliseconds timeout(a.timeoutMs);
  const std::string master = a.masterHost + ":" + std::to_string(a.masterPort);
  auto g = std::make_unique<Group>();
  g->rank = a.rank;
  g->worldSize = a.worldSize;
  g->timeout = timeout;

  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(a.masterPort);
  so.isServer = a.rank == 0;
  so.numWorkers = static_cast<std::size_t>(a.worldSize);
  so.waitWorkers = false;  // the checks below wait, with errors that say what is missing
  so.timeout = timeout;
  try {
    g->store = c10::make_intrusive<c10d::TCPStore>(a.masterHost, so);
  } catch (const std::exception& e) {
    throw std::runtime_error(a.rank == 0 ? "rank 0 cannot serve the rendezvous store on " + master + ": " + message(e)
                                         : "rank " + std::to_string(a.rank) + " cannot reach the master " + master + " within " +
                                               std::to_string(a.timeoutMs) + " ms (is rank 0 running there?): " + message(e));
  }
  try {
    const std::string mine = std::to_string(a.worldSize);
    g->store->set("compnet/world/" + std::to_string(a.rank), bytes(mine));
    const std::string rank0 = text(g->store->get("compnet/world/0"));
    if (rank0 != mine)
      throw std::invalid_argument("world size mismatch: rank " + std::to_string(a.rank) + " was started with world size " + mine + " but rank 0 with " + rank0);
    if (g->store->add("compnet/rank/" + std::to_string(a.rank), 1) > 1)
      throw std::invalid_argument("rank " + std::to_string(a.rank) + " is already taken by another worker of this group");
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(a.rank) + ": rendezvous at " + master + " failed within " + std::to_string(a.timeoutMs) + " ms: " + message(e));
  }

  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  opts->threads = 1;  // collectives are issued one at a time and waited for
  try {
    if (!a.deviceInterface.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(a.deviceInterface));
    else if (!a.deviceHost.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(a.deviceHost));
    else opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(a.rank) + ": cannot open a Gloo TCP device (" +
                             (a.deviceInterface.empty() ? (a.deviceHost.empty() ? std::string("this host's address") : "address " + a.deviceHost) : "interface " + a.deviceInterface) +
                             "): " + message(e));
  }
  try {
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, static_cast<int>(a.rank), static_cast<int>(a.worldSize), opts);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(a.rank) + " of " + std::to_string(a.worldSize) + ": not every worker joined within " +
                             std::to_string(a.timeoutMs) + " ms (start all " + std::to_string(a.worldSize) + " with the same --master and --world-size): " + message(e));
  }
  g_group = std::move(g);
}

void distAllReduceMean(const std::vector<at::Tensor>& tensors) {
  Group& g = group("distAllReduceMean");
  std::vector<at::Tensor> buf{flatten(tensors, "distAllReduceMean")};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  finish(g.pg->allreduce(buf, o), g, "all-reduce");
  buf[0].div_(static_cast<double>(g.worldSize));
  unflatten(buf[0], tensors);
}

void distBroadcast(const std::vector<at::Tensor>& tensors, int64_t root) {
  Group& g = group("distBroadcast");
  if (root < 0 || root >= g.worldSize) throw std::invalid_argument("broadcast root must be a rank in 0.." + std::to_string(g.worldSize - 1) + ", got " + std::to_string(root));
  std::vector<at::Tensor> buf{flatten(tensors, "distBroadcast")};
  c10d::BroadcastOptions o;
  o.rootRank = root;
  finish(g.pg->broadcast(buf, o), g, "broadcast");
  unflatten(buf[0], tensors);
}

void distBarrier() {
  Group& g = group("distBarrier");
  finish(g.pg->barrier(), g, "barrier");
}

void distDestroy() { g_group.reset(); }

}  // namespace compnet::binding
