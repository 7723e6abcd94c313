// Probe for issue 4's fp32-ceiling target (not part of the product): can a plain AVX-512 GEMM
// with the neighbouring batch-norm work fused into it match oneDNN's 1x1 convolutions on the
// reference network's shapes? If so, the memory-bound sweeps that remain around the convolutions
// (BENCHMARKS.md, "Where the rest of the step goes") can be folded into them.
//   expand:  [M = 16384, 64] x [64, 256], bn1's moments summed in the epilogue from registers;
//   project: [M, 256] x [256, 64], bn2 + ReLU6 applied to the input on load (a2 never stored).
// Each is timed against oneDNN's convolution alone and against ATen's unfused sequence; one
// thread, variants interleaved per repetition, medians. Build and run (Debian's libtorch-dev):
//   g++ -O3 -march=native -std=c++17 -fopenmp bench/probes/fused_gemm.cc -o /tmp/fused_gemm \
//     -I/usr/include/torch/csrc/api/include -ltorch -ltorch_cpu -lc10 && /tmp/fused_gemm 21
#include <torch/torch.h>
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <vector>

static double now() { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// C[M,N] = A[M,K] B[K,N]; also column sums and sums of squares of C (the BN moments).
template <int K>
void gemm_stats(const float* A, const float* B, float* C, int64_t M, int64_t N, double* sum, double* sq) {
  constexpr int R = 6;
  std::vector<float> fs(N, 0.f), fq(N, 0.f);
  int64_t r = 0;
  int blocks = 0;
  for (; r + R <= M; r += R) {
    for (int64_t n0 = 0; n0 < N; n0 += 64) {
      __m512 acc[R][4];
      for (int i = 0; i < R; i++) for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
      const float* b = B + n0;
#pragma GCC unroll 4
      for (int k = 0; k < K; k++) {
        __m512 b0 = _mm512_loadu_ps(b + k * N), b1 = _mm512_loadu_ps(b + k * N + 16), b2 = _mm512_loadu_ps(b + k * N + 32), b3 = _mm512_loadu_ps(b + k * N + 48);
        for (int i = 0; i < R; i++) {
          __m512 a = _mm512_set1_ps(A[(r + i) * K + k]);
          acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
          acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
          acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
          acc[i][3] = _mm512_fmadd_ps(a, b3, acc[i][3]);
        }
      }
      for (int j = 0; j < 4; j++) {
        __m512 s = _mm512_loadu_ps(&fs[n0 + 16 * j]), q = _mm512_loadu_ps(&fq[n0 + 16 * j]);
        for (int i = 0; i < R; i++) {
          _mm512_storeu_ps(C + (r + i) * N + n0 + 16 * j, acc[i][j]);
          s = _mm512_add_ps(s, acc[i][j]);
          q = _mm512_fmadd_ps(acc[i][j], acc[i][j], q);
        }
        _mm512_storeu_ps(&fs[n0 + 16 * j], s);
        _mm512_storeu_ps(&fq[n0 + 16 * j], q);
      }
    }
    if (++blocks == 16) {  // flush float partials to double now and then
      for (int64_t n = 0; n < N; n++) sum[n] += fs[n], sq[n] += fq[n], fs[n] = fq[n] = 0;
      blocks = 0;
    }
  }
  for (; r < M; r++)
    for (int64_t n = 0; n < N; n++) {
      float c = 0;
      for (int k = 0; k < K; k++) c += A[r * K + k] * B[k * N + n];
      C[r * N + n] = c;
      fs[n] += c, fq[n] += c * c;
    }
  for (int64_t n = 0; n < N; n++) sum[n] += fs[n], sq[n] += fq[n];
}

// C[M,64] = clamp(A·diag(s) + t, 0, 6)[M,K] B[K,64]: the projection conv with bn2 + ReLU6 applied
// to its input on load (the activation a2 is never stored).
template <int K>
void gemm_act_in(const float* A, const float* s, const float* t, const float* B, float* C, int64_t M) {
  constexpr int R = 6, N = 64;
  alignas(64) float buf[R * K];
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
  int64_t r = 0;
  for (; r + R <= M; r += R) {
    for (int i = 0; i < R; i++)
      for (int k = 0; k < K; k += 16) {
        __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(A + (r + i) * K + k), _mm512_loadu_ps(s + k), _mm512_loadu_ps(t + k));
        _mm512_store_ps(buf + i * K + k, _mm512_min_ps(_mm512_max_ps(v, zero), six));
      }
    __m512 acc[R][4];
    for (int i = 0; i < R; i++) for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int k = 0; k < K; k++) {
      __m512 b0 = _mm512_loadu_ps(B + k * N), b1 = _mm512_loadu_ps(B + k * N + 16), b2 = _mm512_loadu_ps(B + k * N + 32), b3 = _mm512_loadu_ps(B + k * N + 48);
      for (int i = 0; i < R; i++) {
        __m512 a = _mm512_set1_ps(buf[i * K + k]);
        acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(a, b3, acc[i][3]);
      }
    }
    for (int i = 0; i < R; i++) for (int j = 0; j < 4; j++) _mm512_storeu_ps(C + (r + i) * N + 16 * j, acc[i][j]);
  }
  for (; r < M; r++)
    for (int n = 0; n < N; n++) {
      float c = 0;
      for (int k = 0; k < K; k++) c += std::min(std::max(A[r * K + k] * s[k] + t[k], 0.f), 6.f) * B[k * N + n];
      C[r * N + n] = c;
    }
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  at::set_num_threads(1);
  torch::manual_seed(0);
  const int64_t B_ = 64, H = 16, C_ = 64, E = 256, M = B_ * H * H;
  auto x = torch::randn({B_, C_, H, H}).contiguous(at::MemoryFormat::ChannelsLast);
  auto w = torch::randn({E, C_, 1, 1}) * 0.1;
  auto wt = w.view({E, C_}).t().contiguous();  // [K, N]
  auto out = torch::empty({M, E});
  std::vector<double> sum(E), sq(E);
  // A = x as [M, 64] rows (channels-last memory).
  const float* A = x.data_ptr<float>();
  auto ref = at::conv2d(x, w);  // oneDNN
  std::fill(sum.begin(), sum.end(), 0); std::fill(sq.begin(), sq.end(), 0);
  gemm_stats<64>(A, wt.data_ptr<float>(), out.data_ptr<float>(), M, E, sum.data(), sq.data());
  auto refRows = ref.permute({0, 2, 3, 1}).reshape({M, E});
  printf("max abs diff %.3g (ref max %.3g); mean diff %.3g\n", (refRows - out).abs().max().item<float>(), refRows.abs().max().item<float>(),
         (refRows.mean(0) - torch::from_blob(sum.data(), {E}, torch::kDouble).to(torch::kFloat) / M).abs().max().item<float>());
  const double flop = 2.0 * M * C_ * E;
  auto h2 = torch::randn({B_, E, H, H}).contiguous(at::MemoryFormat::ChannelsLast) * 3;
  auto sc = torch::rand({E}) + 0.5, sh = torch::randn({E});
  auto wp = torch::randn({C_, E, 1, 1}) * 0.1;
  auto wpt = wp.view({C_, E}).t().contiguous();
  auto a2ref = (h2 * sc.view({1, E, 1, 1}) + sh.view({1, E, 1, 1})).clamp(0, 6).contiguous(at::MemoryFormat::ChannelsLast);
  {
    auto o = torch::empty({M, C_});
    gemm_act_in<256>(h2.data_ptr<float>(), sc.data_ptr<float>(), sh.data_ptr<float>(), wpt.data_ptr<float>(), o.data_ptr<float>(), M);
    auto r = at::conv2d(a2ref, wp).permute({0, 2, 3, 1}).reshape({M, C_});
    printf("project max abs diff %.3g (ref max %.3g)\n", (r - o).abs().max().item<float>(), r.abs().max().item<float>());
  }
  // Interleaved: every repetition times each variant once, so drift hits all of them.
  std::vector<std::vector<double>> t(6);
  auto timed = [&](int v, auto&& f) { double t0 = now(); f(); t[v].push_back(now() - t0); };
  for (int rep = 0; rep < reps + 3; rep++) {
    timed(0, [&] { auto y = at::conv2d(x, w); });
    timed(1, [&] { auto y = at::conv2d(x, w); auto m = y.mean({0, 2, 3}); auto v = y.square().mean({0, 2, 3}); });
    timed(2, [&] { std::fill(sum.begin(), sum.end(), 0); std::fill(sq.begin(), sq.end(), 0); auto o = torch::empty({M, E}); gemm_stats<64>(A, wt.data_ptr<float>(), o.data_ptr<float>(), M, E, sum.data(), sq.data()); });
    timed(3, [&] { auto y = at::conv2d(a2ref, wp); });
    timed(4, [&] { auto a2 = (h2 * sc.view({1, E, 1, 1}) + sh.view({1, E, 1, 1})).clamp_(0, 6); auto y = at::conv2d(a2, wp); });
    timed(5, [&] { auto o = torch::empty({M, C_}); gemm_act_in<256>(h2.data_ptr<float>(), sc.data_ptr<float>(), sh.data_ptr<float>(), wpt.data_ptr<float>(), o.data_ptr<float>(), M); });
  }
  const char* names[] = {"expand: oneDNN 1x1 conv", "expand: oneDNN conv + ATen moments", "expand: own GEMM + moments in its epilogue",
                         "project: oneDNN 1x1 conv on a stored activation", "project: ATen affine+clamp, then oneDNN conv", "project: own GEMM, affine+clamp on load"};
  for (int v = 0; v < 6; v++) {
    std::vector<double> s(t[v].begin() + 3, t[v].end());  // drop warm-up
    std::sort(s.begin(), s.end());
    printf("%-48s median %6.2f ms (min %.2f, max %.2f) = %5.1f GFLOP/s\n", names[v], s[s.size() / 2], s.front(), s.back(), flop / s[s.size() / 2] / 1e6);
  }
}
