// Fused training-mode batch norm + clamp (ReLU6, or none) for channels-last CPU tensors, with its
// own backward.
//
// Why: unfused, a training step sweeps each 16 MiB activation several times (BN statistics, BN
// normalise, clamp; clamp backward, BN backward reductions, BN backward dx). Fused, the clamp runs
// inside the normalise pass, and its backward mask is recomputed from the input inside BN's
// backward passes, so the clamp's own forward and backward sweeps disappear (BENCHMARKS.md item 5).
//
// Layout: a channels-last [N, C, H, W] tensor (or a contiguous [M, C] one) is M = N·H·W rows of C
// contiguous channels. Rows are split over threads with at::parallel_for (libtorch's OpenMP pool:
// the binding is built with -fopenmp, without which parallel_for runs serially); each thread reduces
// into its own per-channel accumulators, and the inner loops over C are plain loops that GCC
// vectorises (function clones for AVX-512, AVX2 and baseline x86-64, picked at load time).
#pragma once

#include <type_traits>
#include <torch/torch.h>

#include "autograd_support.h"
#include "generated/op_structs.h"
#include "kernel_support.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

namespace compnet {

#pragma GCC push_options
#pragma GCC optimize("O3")

// One pass for both moments: sum[c] += x, sq[c] += x², in double (var = E[x²] − mean² then loses
// nothing that matters unless |mean| / std exceeds about 1e4). Blocks of kStatRows rows are summed
// in T first (scratch: 2·C values): GCC vectorises that loop, and not one with double accumulators.
constexpr int64_t kStatRows = 16;
template <typename T>
COMPNET_INLINE void statsRows(const T* __restrict x, int64_t rows, int64_t C, T* __restrict scratch, double* __restrict sum, double* __restrict sq) {
  T* __restrict s1 = scratch;
  T* __restrict s2 = scratch + C;
  for (int64_t r0 = 0; r0 < rows; r0 += kStatRows) {
    for (int64_t c = 0; c < C; ++c) s1[c] = s2[c] = T(0);
    const int64_t r1 = std::min(rows, r0 + kStatRows);
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      for (int64_t c = 0; c < C; ++c) {
        s1[c] += xr[c];
        s2[c] += xr[c] * xr[c];
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      sum[c] += s1[c];
      sq[c] += s2[c];
    }
  }
}

// y[r, c] = clamp(x[r, c] * a[c] + b[c], lo, hi)
template <typename T>
COMPNET_INLINE void normRows(const T* __restrict x, int64_t rows, int64_t C, const T* __restrict a, const T* __restrict b, T lo, T hi, T* __restrict y) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T v = xr[c] * a[c] + b[c];
      yr[c] = v < lo ? lo : (v > hi ? hi : v);
    }
  }
}

// y[r, c] = x[r, c] * a[c] + b[c] + z[r, c]: batch norm, then a residual connection.
COMPNET_INLINE void normAddRows(const float* __restrict x, int64_t rows, int64_t C, const float* __restrict a, const float* __restrict b,
                                const float* __restrict z, float* __restrict y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * a[c] + b[c] + z[r * C + c];
}

// With the clamp mask m = lo < x*a+b < hi: sg[c] += g·m, sgx[c] += g·m·(x - mean).
template <typename T>
COMPNET_INLINE void gradStatsRows(const T* __restrict g, const T* __restrict x, int64_t rows, int64_t C, const T* __restrict a, const T* __restrict b,
                                  const T* __restrict mean, T lo, T hi, T* __restrict sg, T* __restrict sgx) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * C;
    const T* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T v = xr[c] * a[c] + b[c];
      const T gm = (v > lo && v < hi) ? gr[c] : T(0);
      sg[c] += gm;
      sgx[c] += gm * (xr[c] - mean[c]);
    }
  }
}

// dx[r, c] = g·m·k1[c] + x·k2[c] + k3[c]
template <typename T>
COMPNET_INLINE void gradInputRows(const T* __restrict g, const T* __restrict x, int64_t rows, int64_t C, const T* __restrict a, const T* __restrict b,
                                  T lo, T hi, const T* __restrict k1, const T* __restrict k2, const T* __restrict k3, T* __restrict dx) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * C;
    const T* xr = x + r * C;
    T* dr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T v = xr[c] * a[c] + b[c];
      const T gm = (v > lo && v < hi) ? gr[c] : T(0);
      dr[c] = gm * k1[c] + xr[c] * k2[c] + k3[c];
    }
  }
}

// Vectorised entry points (clones per ISA) for float; double uses the templates as they are.
COMPNET_CLONES void statsRowsF(const float* x, int64_t rows, int64_t C, float* scratch, double* sum, double* sq) { statsRows(x, rows, C, scratch, sum, sq); }
COMPNET_CLONES void normRowsF(const float* x, int64_t rows, int64_t C, const float* a, const float* b, float lo, float hi, float* y) {
  normRows(x, rows, C, a, b, lo, hi, y);
}
COMPNET_CLONES void normAddRowsF(const float* x, int64_t rows, int64_t C, const float* a, const float* b, const float* z, float* y) {
  normAddRows(x, rows, C, a, b, z, y);
}
COMPNET_CLONES void gradStatsRowsF(const float* g, const float* x, int64_t rows, int64_t C, const float* a, const float* b, const float* mean, float lo, float hi,
                                   float* sg, float* sgx) {
  gradStatsRows(g, x, rows, C, a, b, mean, lo, hi, sg, sgx);
}
COMPNET_CLONES void gradInputRowsF(const float* g, const float* x, int64_t rows, int64_t C, const float* a, const float* b, float lo, float hi, const float* k1,
                                   const float* k2, const float* k3, float* dx) {
  gradInputRows(g, x, rows, C, a, b, lo, hi, k1, k2, k3, dx);
}
// Typed entry points for the dispatch below: float takes the ISA clones, double the templates.
template <typename T>
inline void statsRowsT(const T* x, int64_t rows, int64_t C, double* sum, double* sq) {
  std::vector<T> scratch(2 * C);
  if constexpr (std::is_same_v<T, float>) statsRowsF(x, rows, C, scratch.data(), sum, sq);
  else statsRows(x, rows, C, scratch.data(), sum, sq);
}
template <typename T>
inline void normRowsT(const T* x, int64_t rows, int64_t C, const T* a, const T* b, T lo, T hi, T* y) {
  if constexpr (std::is_same_v<T, float>) normRowsF(x, rows, C, a, b, lo, hi, y);
  else normRows(x, rows, C, a, b, lo, hi, y);
}
template <typename T>
inline void gradStatsRowsT(const T* g, const T* x, int64_t rows, int64_t C, const T* a, const T* b, const T* mean, T lo, T hi, T* sg, T* sgx) {
  if constexpr (std::is_same_v<T, float>) gradStatsRowsF(g, x, rows, C, a, b, mean, lo, hi, sg, sgx);
  else gradStatsRows(g, x, rows, C, a, b, mean, lo, hi, sg, sgx);
}
template <typename T>
inline void gradInputRowsT(const T* g, const T* x, int64_t rows, int64_t C, const T* a, const T* b, T lo, T hi, const T* k1, const T* k2, const T* k3, T* dx) {
  if constexpr (std::is_same_v<T, float>) gradInputRowsF(g, x, rows, C, a, b, lo, hi, k1, k2, k3, dx);
  else gradInputRows(g, x, rows, C, a, b, lo, hi, k1, k2, k3, dx);
}

#pragma GCC pop_options

// Rows per task: a few thousand rows keep per-thread accumulators cheap to merge.
constexpr int64_t kGrain = 256;

// Per-channel sums over rows of `body(begin, rows, acc)` (accumulating in T per thread), merged
// over threads in double.
template <typename T, typename Body>
std::vector<double> reduceRows(int64_t M, int64_t C, int outputs, const Body& body, int64_t grain = kGrain) {
  const int threads = at::get_num_threads();
  std::vector<T> partial(static_cast<size_t>(threads) * outputs * C, T(0));
  at::parallel_for(0, M, grain, [&](int64_t begin, int64_t end) {
    T* acc = partial.data() + static_cast<size_t>(at::get_thread_num()) * outputs * C;
    body(begin, end - begin, acc);
  });
  std::vector<double> out(static_cast<size_t>(outputs) * C, 0.0);
  for (int t = 0; t < threads; ++t)
    for (size_t k = 0; k < out.size(); ++k) out[k] += partial[static_cast<size_t>(t) * outputs * C + k];
  return out;
}

// x viewed as [M, C] rows, or an error naming the op and shape.
inline int64_t rowsOf(const at::Tensor& x, const char* op) {
  const bool rows2d = x.dim() == 2 && x.is_contiguous();
  const bool cl = x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (!rows2d && !cl) {
    std::ostringstream s;
    s << op << ": input " << x.sizes() << " must be channels-last 4-D or contiguous 2-D";
    throw std::invalid_argument(s.str());
  }
  return x.numel() / x.size(1);
}

// Batch statistics of one batch norm and what its passes need, per channel.
template <typename T>
struct BnForward {
  at::Tensor mean, invstd;   // saved for backward
  std::vector<T> a, shift;   // y = x·a + shift
  std::vector<T> unbiased;   // for the running variance
};

// From the moments Σx, Σx² over M rows (moments[c], moments[C + c]): mean, 1/√(var + eps) and
// the affine form of the normalisation. weight/bias may be empty (1 and 0).
template <typename T>
BnForward<T> bnForward(const std::vector<double>& moments, int64_t M, int64_t C, double eps, const at::Tensor& weight, const at::Tensor& bias,
                       const at::TensorOptions& opts) {
  BnForward<T> f{at::empty({C}, opts), at::empty({C}, opts), std::vector<T>(C), std::vector<T>(C), std::vector<T>(C)};
  auto* mp = f.mean.template data_ptr<T>();
  auto* ip = f.invstd.template data_ptr<T>();
  const auto wc = weight.contiguous();
  const auto bc = bias.contiguous();
  const T* wp = wc.numel() ? wc.template data_ptr<T>() : nullptr;
  const T* bp = bc.numel() ? bc.template data_ptr<T>() : nullptr;
  for (int64_t c = 0; c < C; ++c) {
    const double mu = moments[c] / M;
    const double ss = std::max(0.0, moments[C + c] - mu * moments[c]);  // Σ(x − μ)²
    mp[c] = static_cast<T>(mu);
    ip[c] = static_cast<T>(1.0 / std::sqrt(ss / M + eps));
    f.a[c] = (wp ? wp[c] : T(1)) * ip[c];
    f.shift[c] = (bp ? bp[c] : T(0)) - mp[c] * f.a[c];
    f.unbiased[c] = static_cast<T>(ss / (M - 1));
  }
  return f;
}

// running ← (1 − momentum)·running + momentum·batch, as ATen does (unbiased variance).
template <typename T>
void bnUpdateRunning(const at::Tensor& runningMean, const at::Tensor& runningVar, const BnForward<T>& f, double momentum) {
  if (!runningMean.numel() || !runningVar.numel()) return;
  at::NoGradGuard ng;
  const auto C = static_cast<int64_t>(f.unbiased.size());
  auto unbiased = at::empty({C}, f.mean.options());
  std::copy(f.unbiased.begin(), f.unbiased.end(), unbiased.template data_ptr<T>());
  runningMean.mul_(1 - momentum).add_(f.mean, momentum);
  runningVar.mul_(1 - momentum).add_(unbiased, momentum);
}

// The affine form y = x·a + shift again, from saved mean and invstd (backward recomputes masks).
template <typename T>
void bnAffine(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& invstd, std::vector<T>& a, std::vector<T>& shift) {
  const int64_t C = mean.numel();
  const auto wc = weight.contiguous();
  const auto bc = bias.contiguous();
  const T* wp = wc.numel() ? wc.template data_ptr<T>() : nullptr;
  const T* bp = bc.numel() ? bc.template data_ptr<T>() : nullptr;
  const T* mp = mean.template data_ptr<T>();
  const T* ip = invstd.template data_ptr<T>();
  a.resize(C);
  shift.resize(C);
  for (int64_t c = 0; c < C; ++c) {
    a[c] = (wp ? wp[c] : T(1)) * ip[c];
    shift[c] = (bp ? bp[c] : T(0)) - mp[c] * a[c];
  }
}

// Batch norm's backward from the sums sg = Σg, sgx = Σg·(x − μ) over M rows (g already masked by
// the activation): dweight, dbias, and dx = g·k1 + x·k2 + k3, i.e.
// dx = γ·invstd·(g − sg/M − (x−μ)·invstd²·sgx/M).
template <typename T>
struct BnBackward {
  at::Tensor dweight, dbias;
  std::vector<T> k1, k2, k3;
};
template <typename T>
BnBackward<T> bnBackward(const double* sg, const double* sgx, int64_t M, const at::Tensor& weight, const at::Tensor& mean, const at::Tensor& invstd) {
  const int64_t C = mean.numel();
  BnBackward<T> b{at::empty({C}, mean.options()), at::empty({C}, mean.options()), std::vector<T>(C), std::vector<T>(C), std::vector<T>(C)};
  const auto wc = weight.contiguous();
  const T* wp = wc.numel() ? wc.template data_ptr<T>() : nullptr;
  const T* mp = mean.template data_ptr<T>();
  const T* ip = invstd.template data_ptr<T>();
  auto* dwp = b.dweight.template data_ptr<T>();
  auto* dbp = b.dbias.template data_ptr<T>();
  for (int64_t c = 0; c < C; ++c) {
    const double w = wp ? wp[c] : 1.0, is = ip[c];
    dwp[c] = static_cast<T>(sgx[c] * is);
    dbp[c] = static_cast<T>(sg[c]);
    const double kx = -w * is * is * is * sgx[c] / M;
    b.k1[c] = static_cast<T>(w * is);
    b.k2[c] = static_cast<T>(kx);
    b.k3[c] = static_cast<T>(-w * is * sg[c] / M - kx * mp[c]);
  }
  return b;
}

// Batch statistics of M rows of C channels (x), as bnForward gives them.
template <typename T>
BnForward<T> bnForwardRows(const T* x, int64_t M, int64_t C, double eps, const at::Tensor& weight, const at::Tensor& bias, const at::TensorOptions& opts) {
  auto moments = reduceRows<double>(M, C, 2, [&](int64_t b, int64_t n, double* acc) { statsRowsT(x + b * C, n, C, acc, acc + C); });
  return bnForward<T>(moments, M, C, eps, weight, bias, opts);
}

// Batch norm's backward from its output gradient g and input x (M rows of C channels; g masked by
// the clamp lo < x·a + shift < hi): the reductions over the rows, then bnBackward.
template <typename T>
BnBackward<T> bnBackwardRows(const T* g, const T* x, int64_t M, int64_t C, const std::vector<T>& a, const std::vector<T>& shift, T lo, T hi,
                             const at::Tensor& weight, const at::Tensor& mean, const at::Tensor& invstd) {
  const T* mp = mean.template data_ptr<T>();
  auto sums = reduceRows<T>(M, C, 2, [&](int64_t b, int64_t n, T* acc) {
    gradStatsRowsT(g + b * C, x + b * C, n, C, a.data(), shift.data(), mp, lo, hi, acc, acc + C);
  });
  return bnBackward<T>(sums.data(), sums.data() + C, M, weight, mean, invstd);
}

// A per-channel tensor argument: empty, or C values of x's dtype; else an error naming the op.
inline void checkPerChannel(const at::Tensor& t, const at::Tensor& x, int64_t C, const char* op) {
  if (t.numel() != 0 && (t.numel() != C || t.scalar_type() != x.scalar_type())) {
    std::ostringstream s;
    s << op << ": per-channel tensor " << t.sizes() << " " << t.scalar_type() << " does not match input " << x.sizes() << " " << x.scalar_type();
    throw std::invalid_argument(s.str());
  }
}

struct BatchNormClamp : public torch::autograd::Function<BatchNormClamp> {
  using Args = BatchNormClampArgs;
  // What backward needs, by name.
  struct Saved {
    at::Tensor x, weight, bias, mean, invstd;
    template <typename F>
    void each(F&& f) { f(x); f(weight); f(bias); f(mean); f(invstd); }
  };

  // a.min/a.max: clamp bounds (±infinity for plain batch norm). Absent tensors are empty.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::TensorList, const Args& a) {
    const at::Tensor& x = a.x;
    const int64_t C = x.size(1);
    const int64_t M = rowsOf(x, "batchNormClamp");
    for (const auto* t : {&a.weight, &a.bias, &a.runningMean, &a.runningVar}) checkPerChannel(*t, x, C, "batchNormClamp");
    if (M < 2) throw std::invalid_argument("batchNormClamp: training mode needs more than one value per channel");
    auto y = at::empty_like(x);
    at::Tensor mean, invstd;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batchNormClamp", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      auto f = bnForwardRows<scalar_t>(xp, M, C, a.eps, a.weight, a.bias, x.options());
      scalar_t* yp = y.data_ptr<scalar_t>();
      at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
        normRowsT(xp + b * C, e - b, C, f.a.data(), f.shift.data(), static_cast<scalar_t>(a.min), static_cast<scalar_t>(a.max), yp + b * C);
      });
      bnUpdateRunning(a.runningMean, a.runningVar, f, a.momentum);
      mean = f.mean;
      invstd = f.invstd;
    });
    save(ctx, Saved{x, a.weight, a.bias, mean, invstd});
    ctx->saved_data["lo"] = a.min;
    ctx->saved_data["hi"] = a.max;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto s = load<Saved>(ctx);
    const double lo = ctx->saved_data["lo"].toDouble();
    const double hi = ctx->saved_data["hi"].toDouble();
    const int64_t C = s.x.size(1);
    const int64_t M = s.x.numel() / C;
    auto g = s.x.dim() == 4 ? grads[0].contiguous(at::MemoryFormat::ChannelsLast) : grads[0].contiguous();
    auto dx = at::empty_like(s.x);
    at::Tensor dw, db;
    AT_DISPATCH_FLOATING_TYPES(s.x.scalar_type(), "batchNormClampBackward", [&] {
      const scalar_t* xp = s.x.data_ptr<scalar_t>();
      const scalar_t* gp = g.data_ptr<scalar_t>();
      std::vector<scalar_t> a, sh;
      bnAffine(s.weight, s.bias, s.mean, s.invstd, a, sh);
      const auto slo = static_cast<scalar_t>(lo), shi = static_cast<scalar_t>(hi);
      auto k = bnBackwardRows(gp, xp, M, C, a, sh, slo, shi, s.weight, s.mean, s.invstd);
      dw = k.dweight;
      db = k.dbias;
      scalar_t* dp = dx.data_ptr<scalar_t>();
      at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
        gradInputRowsT(gp + b * C, xp + b * C, e - b, C, a.data(), sh.data(), slo, shi, k.k1.data(), k.k2.data(), k.k3.data(), dp + b * C);
      });
    });
    auto out = gradientsFor<Args>();
    out[Args::kX] = dx;
    if (s.weight.numel()) out[Args::kWeight] = dw;
    if (s.bias.numel()) out[Args::kBias] = db;
    return out;
  }
};

// Training-mode batch norm followed by clamp(min, max) (0, 6: ReLU6; ±inf: none).
// Absent tensors travel as empty ones: autograd's apply cannot take undefined ones.
inline at::Tensor batchNormClamp(const BatchNormClampArgs& args) {
  const auto none = at::empty({0}, args.x.options());
  auto a = args;
  for (auto* t : {&a.weight, &a.bias, &a.runningMean, &a.runningVar})
    if (!t->defined()) *t = none;
  return applyNamed<BatchNormClamp>(a);
}

}  // namespace compnet
