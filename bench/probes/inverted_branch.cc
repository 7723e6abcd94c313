// Probe for issue 4 (not part of the product): the forward and backward time of one fused
// inverted-residual block (invertedBranch, native/inverted_branch.h) on the reference network's
// shapes (batch 64, 16x16, C = 64, E = 256, with the residual), 2 threads, medians of 40 after 5
// warm-up iterations. Run it with jemalloc preloaded and configured as the bench does: with glibc's
// malloc, or jemalloc's default decay, every 16 MiB allocation page-faults anew and the block takes
// about twice as long. Build and run (Debian's libtorch-dev):
//   g++ -O2 -std=c++17 -fopenmp bench/probes/inverted_branch.cc -o /tmp/inverted_branch \
//     -I/usr/include/torch/csrc/api/include -ltorch -ltorch_cpu -lc10 -Wno-psabi && \
//   LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
//     /tmp/inverted_branch
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "../../native/inverted_branch.h"

using namespace compnet;
static double nowms() { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main() {
  at::set_num_threads(2);
  const int64_t N = 64, C = 64, E = 256, H = 16;
  auto x = torch::randn({N, C, H, H}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  auto w1 = (torch::randn({E, C, 1, 1}) * 0.1).requires_grad_(true), dw = torch::randn({E, 1, 3, 3}).requires_grad_(true), w3 = (torch::randn({C, E, 1, 1}) * 0.1).requires_grad_(true);
  auto g1 = torch::ones({E}).requires_grad_(true), b1 = torch::zeros({E}).requires_grad_(true), g2 = torch::ones({E}).requires_grad_(true), b2 = torch::zeros({E}).requires_grad_(true);
  auto g3 = torch::ones({C}).requires_grad_(true), b3 = torch::zeros({C}).requires_grad_(true);
  auto rm1 = torch::zeros({E}), rv1 = torch::ones({E}), rm2 = torch::zeros({E}), rv2 = torch::ones({E}), rm3 = torch::zeros({C}), rv3 = torch::ones({C});
  auto r = torch::randn({N, C, H, H}).contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<double> f, b;
  for (int it = 0; it < 45; it++) {
    double t0 = nowms();
    auto y = InvertedBranch::apply(x, w1, g1, b1, rm1, rv1, dw, g2, b2, rm2, rv2, w3, g3, b3, rm3, rv3, true, 0.1, 1e-5);
    double t1 = nowms();
    auto grads = torch::autograd::grad({y}, {x, w1, g1, b1, dw, g2, b2, w3, g3, b3}, {r});
    double t2 = nowms();
    if (it >= 5) f.push_back(t1 - t0), b.push_back(t2 - t1);
  }
  std::sort(f.begin(), f.end());
  std::sort(b.begin(), b.end());
  const auto median = [](const std::vector<double>& v) { return (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2; };
  printf("one block, medians of %zu (min-max): forward %.2f ms (%.2f-%.2f), backward %.2f ms (%.2f-%.2f)\n", f.size(), median(f), f.front(), f.back(),
         median(b), b.front(), b.back());
}
