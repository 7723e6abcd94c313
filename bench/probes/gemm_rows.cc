// Probe for issue 4 (not part of the product): compnet's own GEMMs (native/gemm_rows.h), as
// invertedBranch runs them (rows split over the threads, each thread's rows in chunks of 96),
// against oneDNN's 1x1 convolutions on the reference network's four GEMM shapes: each 1x1
// convolution of a block, [16384, 64] x [64, 256] and [16384, 256] x [256, 64], as a forward / input
// gradient (NN) and as a weight gradient (TN, summed over the 16384 rows). Variants interleaved per
// repetition, medians of 20 after 4 warm-up repetitions. Build and run (Debian's libtorch-dev):
//   g++ -O2 -std=c++17 -fopenmp bench/probes/gemm_rows.cc -o /tmp/gemm_rows \
//     -I/usr/include/torch/csrc/api/include -ltorch -ltorch_cpu -lc10 -Wno-psabi && /tmp/gemm_rows 2
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../../native/gemm_rows.h"

static double now() { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int main(int argc, char** argv) {
  at::set_num_threads(argc > 1 ? std::atoi(argv[1]) : 2);
  torch::manual_seed(0);
  const int64_t N = 64, H = 16, M = N * H * H, C = 64, E = 256, chunk = 96;
  const double flop = 2.0 * M * C * E;
  // Rows of channels-last activations, and the same memory viewed as NCHW tensors for oneDNN.
  auto x = torch::randn({M, C}), h = torch::randn({M, E});
  auto xc = x.view({N, H, H, C}).permute({0, 3, 1, 2}), hc = h.view({N, H, H, E}).permute({0, 3, 1, 2});
  auto w = torch::randn({E, C}) * 0.1;  // expand's weight; project's is [C, E]
  auto wt = w.t().contiguous();
  auto outE = torch::empty({M, E}), outC = torch::empty({M, C});
  const float *xp = x.data_ptr<float>(), *hp = h.data_ptr<float>();
  // C[M, n] = A[M, k]·B[k, n], chunked over rows as in invertedBranch
  auto nn = [&](const float* A, int64_t k, const float* B, int64_t n, float* out) {
    at::parallel_for(0, M, 256, [&](int64_t b, int64_t e) {
      for (int64_t r0 = b; r0 < e; r0 += chunk) compnet::gemmRowsF(A + r0 * k, std::min(chunk, e - r0), k, B, n, out + r0 * n);
    });
  };
  // D[p, q] = Σ_rows X[r, p]·Y[r, q], one partial per thread, summed at the end
  auto tn = [&](const float* X, int64_t p, const float* Y, int64_t q) {
    std::vector<float> part(static_cast<size_t>(at::get_num_threads()) * p * q, 0.0f);
    at::parallel_for(0, M, 256, [&](int64_t b, int64_t e) {
      float* D = part.data() + static_cast<size_t>(at::get_thread_num()) * p * q;
      for (int64_t r0 = b; r0 < e; r0 += chunk) compnet::gemmTnAccF(X + r0 * p, p, Y + r0 * q, q, std::min(chunk, e - r0), D);
    });
    return torch::from_blob(part.data(), {at::get_num_threads(), p, q}).sum(0);
  };
  const auto w4 = w.view({E, C, 1, 1}), wp4 = wt.t().contiguous().view({C, E, 1, 1});
  // correctness against oneDNN
  nn(xp, C, wt.data_ptr<float>(), E, outE.data_ptr<float>());
  printf("NN [M,64]x[64,256] max abs diff vs oneDNN %.2g\n", (at::conv2d(xc, w4).permute({0, 2, 3, 1}).reshape({M, E}) - outE).abs().max().item<float>());
  auto dW = std::get<1>(at::convolution_backward(hc, xc, w4, c10::nullopt, {1, 1}, {0, 0}, {1, 1}, false, {0, 0}, 1, {false, true, false}));
  auto mine = tn(hp, E, xp, C);
  printf("TN [M,256]^T x [M,64] max abs diff vs oneDNN %.2g (values up to %.3g)\n", (dW.view({E, C}) - mine).abs().max().item<float>(),
         mine.abs().max().item<float>());
  const char* names[] = {"expand / project dX: oneDNN 1x1 conv, 64 -> 256", "  own NN GEMM [M, 64] x [64, 256]",
                         "project / expand dX: oneDNN 1x1 conv, 256 -> 64", "  own NN GEMM [M, 256] x [256, 64]",
                         "expand's dW: oneDNN conv backward (weight)",      "  own TN GEMM [M, 256]^T x [M, 64]",
                         "project's dW: oneDNN conv backward (weight)",     "  own TN GEMM [M, 64]^T x [M, 256]"};
  std::vector<std::vector<double>> t(8);
  auto timed = [&](int v, auto&& f) {
    const double t0 = now();
    f();
    t[v].push_back(now() - t0);
  };
  for (int rep = 0; rep < 24; rep++) {
    timed(0, [&] { auto y = at::conv2d(xc, w4); });
    timed(1, [&] { nn(xp, C, wt.data_ptr<float>(), E, outE.data_ptr<float>()); });
    timed(2, [&] { auto y = at::conv2d(hc, wp4); });
    timed(3, [&] { nn(hp, E, w.data_ptr<float>(), C, outC.data_ptr<float>()); });
    timed(4, [&] { auto g = at::convolution_backward(hc, xc, w4, c10::nullopt, {1, 1}, {0, 0}, {1, 1}, false, {0, 0}, 1, {false, true, false}); });
    timed(5, [&] { auto d = tn(hp, E, xp, C); });
    timed(6, [&] { auto g = at::convolution_backward(xc, hc, wp4, c10::nullopt, {1, 1}, {0, 0}, {1, 1}, false, {0, 0}, 1, {false, true, false}); });
    timed(7, [&] { auto d = tn(xp, C, hp, E); });
  }
  printf("%d threads, medians of 20 (min-max), ms; every shape is %.3f GFLOP\n", at::get_num_threads(), flop / 1e9);
  for (int v = 0; v < 8; v++) {
    std::vector<double> s(t[v].begin() + 4, t[v].end());
    std::sort(s.begin(), s.end());
    const double med = (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2;
    printf("%-50s %6.2f (%.2f-%.2f) = %5.1f GFLOP/s\n", names[v], med, s.front(), s.back(), flop / med / 1e6);
  }
}
