// An inverted-residual block in training mode, from its input x to its output, as one op with
// its own backward:
//
//   y = x + bn3(conv1x1(relu6(bn2(depthwise3x3(relu6(bn1(conv1x1(x, w1)))))), w3))
//
// (without "x +" when `residual` is false: output mixing adds the block outputs itself) for a
// channels-last float32 x [N, C, H, W], C, E and the output width multiples of 16.
//
// Why: invertedMiddle (inverted_middle.h) already fuses the middle, but the two 1x1 convolutions
// around it ran as oneDNN ops, which read and write whole 16 MiB tensors, and the batch-norm work
// next to them needed passes of its own (BENCHMARKS.md, "Changes applied", item 8). Here the
// convolutions are compnet's own GEMMs (gemm_rows.h) over chunks of kChunkRows rows that stay in
// the L2 cache, and that work runs on each chunk while it is there:
//   forward:  h1 = x·w1ᵀ with bn1's moments summed from the GEMM's registers; the middle's pass →
//             h2 with bn2's moments (h1, h2 and gm below are written with non-temporal stores); per chunk, a2 = relu6(bn2(h2)) (never stored) and h3 = a2·w3ᵀ
//             with bn3's moments; y = bn3(h3) + x;
//   backward: bn3's reductions; per chunk, dh3 (bn3's input gradient, never stored), g = dh3·w3
//             (written: the middle's pass needs it whole), bn2's reductions, a2 again and w3's
//             gradient; the middle's backward pass → gm; per chunk, dh1 = bn1's input gradient
//             (never stored), dx = dh1·w1 + dy and w1's gradient dh1ᵀ·x.
// The 16 MiB tensors are swept 12 times per step instead of 20, and the block's batch norm and
// residual connection need no separate ops (and no autograd nodes) of their own.
#pragma once

#include <torch/torch.h>

#include <limits>
#include <sstream>
#include <vector>

#include "autograd_support.h"
#include "batch_norm_act.h"
#include "gemm_rows.h"
#include "inverted_middle.h"

namespace compnet {

// Rows per chunk: 96 rows of 256 channels are 96 KiB, well inside Zen 4's 1 MiB L2 with the
// weights (64 KiB) and the chunk's other operands.
constexpr int64_t kChunkRows = 96;

// body(r0, rows) for each chunk of [begin, begin + n).
template <typename Body>
void forChunks(int64_t begin, int64_t n, const Body& body) {
  for (int64_t r0 = begin; r0 < begin + n; r0 += kChunkRows) body(r0, std::min(kChunkRows, begin + n - r0));
}

// Adds a thread's float partial sums into its double accumulators.
inline void addInto(double* acc, const std::vector<float>& part) {
  for (size_t k = 0; k < part.size(); ++k) acc[k] += part[k];
}

// Per-channel moments (Σ, Σ², C each) of a [M, C] output made chunk by chunk: body(r0, rows, sum,
// sq, scratch) makes rows [r0, r0 + rows) and adds their moments to sum and sq (float, per chunk;
// summed across chunks and threads in double); scratch is the thread's `scratchSize` floats.
template <typename Body>
std::vector<double> chunkedMoments(int64_t M, int64_t C, int64_t scratchSize, const Body& body) {
  return reduceRows<double>(M, C, 2, [&](int64_t b, int64_t n, double* acc) {
    std::vector<float> moments(2 * C), scratch(scratchSize);
    forChunks(b, n, [&](int64_t r0, int64_t rows) {
      std::fill(moments.begin(), moments.end(), 0.0f);
      body(r0, rows, moments.data(), moments.data() + C, scratch.data());
      addInto(acc, moments);
    });
    streamFence();  // the body may have streamed its output
  });
}

struct InvertedBranch : public torch::autograd::Function<InvertedBranch> {
  using Args = InvertedBranchArgs;
  // What backward needs, by name.
  struct Saved {
    at::Tensor x, w1, weight1, bias1, mean1, invstd1, dw, h1, h2, weight2, bias2, mean2, invstd2, w3, h3, weight3, bias3, mean3, invstd3;
    template <typename F>
    void each(F&& f) {
      f(x); f(w1); f(weight1); f(bias1); f(mean1); f(invstd1); f(dw); f(h1); f(h2); f(weight2); f(bias2); f(mean2); f(invstd2);
      f(w3); f(h3); f(weight3); f(bias3); f(mean3); f(invstd3);
    }
  };

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::TensorList, const Args& a) {
    const at::Tensor &x = a.x, &w1 = a.w1, &dw = a.dw, &w3 = a.w3;
    const bool residual = a.residual;
    const double eps = a.eps;
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), M = N * H * W, E = w1.size(0), Co = w3.size(0);
    const auto cl = x.options().memory_format(at::MemoryFormat::ChannelsLast);
    const auto b1 = w1.reshape({E, C}).t().contiguous();  // [C, E]
    const float *xp = x.data_ptr<float>(), *b1p = b1.data_ptr<float>();
    // expand: h1 = x·w1ᵀ, with bn1's moments summed from the GEMM's registers
    auto h1 = at::empty({N, E, H, W}, cl);
    float* h1p = h1.data_ptr<float>();
    auto f1 = bnForward<float>(chunkedMoments(M, E, kChunkRows * E, [&](int64_t r0, int64_t rows, float* sum, float* sq, float* buf) {
      gemmRowsF(xp + r0 * C, rows, C, b1p, E, buf, nullptr, sum, sq);
      streamCopy(buf, rows * E, h1p + r0 * E);
    }), M, E, eps, a.bn1.weight, a.bn1.bias, x.options());
    auto h2 = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    auto f2 = bnForward<float>(middleForwardPass(h1, f1.a.data(), f1.shift.data(), dw, h2, /*stream=*/true), M, E, eps, a.bn2.weight, a.bn2.bias, x.options());
    // project: h3 = relu6(bn2(h2))·w3ᵀ with bn3's moments, the activation made per chunk and never stored
    const auto b3 = w3.reshape({Co, E}).t().contiguous();  // [E, Co]
    const float *h2p = h2.data_ptr<float>(), *b3p = b3.data_ptr<float>();
    auto h3 = at::empty({N, Co, H, W}, cl);
    float* h3p = h3.data_ptr<float>();
    auto f3 = bnForward<float>(chunkedMoments(M, Co, kChunkRows * E, [&](int64_t r0, int64_t rows, float* sum, float* sq, float* a2) {
      normRowsF(h2p + r0 * E, rows, E, f2.a.data(), f2.shift.data(), 0.0f, 6.0f, a2);
      gemmRowsF(a2, rows, E, b3p, Co, h3p + r0 * Co, nullptr, sum, sq);
    }), M, Co, eps, a.bn3.weight, a.bn3.bias, x.options());
    // y = bn3(h3) (+ x)
    auto y = at::empty({N, Co, H, W}, cl);
    float* yp = y.data_ptr<float>();
    const float inf = std::numeric_limits<float>::infinity();
    at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
      if (residual) normAddRowsF(h3p + b * Co, e - b, Co, f3.a.data(), f3.shift.data(), xp + b * C, yp + b * Co);
      else normRowsF(h3p + b * Co, e - b, Co, f3.a.data(), f3.shift.data(), -inf, inf, yp + b * Co);
    });
    bnUpdateRunning(a.bn1.runningMean, a.bn1.runningVar, f1, a.momentum);
    bnUpdateRunning(a.bn2.runningMean, a.bn2.runningVar, f2, a.momentum);
    bnUpdateRunning(a.bn3.runningMean, a.bn3.runningVar, f3, a.momentum);
    save(ctx, Saved{x, w1, a.bn1.weight, a.bn1.bias, f1.mean, f1.invstd, dw, h1, h2, a.bn2.weight, a.bn2.bias, f2.mean, f2.invstd, w3, h3, a.bn3.weight,
                    a.bn3.bias, f3.mean, f3.invstd});
    ctx->saved_data["residual"] = residual;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto s = load<Saved>(ctx);
    const auto &x = s.x, &w1 = s.w1, &weight1 = s.weight1, &bias1 = s.bias1, &mean1 = s.mean1, &invstd1 = s.invstd1, &dw = s.dw;
    const auto &h1 = s.h1, &h2 = s.h2, &weight2 = s.weight2, &bias2 = s.bias2, &mean2 = s.mean2, &invstd2 = s.invstd2, &w3 = s.w3;
    const auto &h3 = s.h3, &weight3 = s.weight3, &bias3 = s.bias3, &mean3 = s.mean3, &invstd3 = s.invstd3;
    const bool residual = ctx->saved_data["residual"].toBool();
    const int64_t C = x.size(1), M = x.numel() / C, E = w1.size(0), Co = w3.size(0);
    auto dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    std::vector<float> a1v, b1v, a2v, b2v, a3v, b3v;
    bnAffine(weight1, bias1, mean1, invstd1, a1v, b1v);
    bnAffine(weight2, bias2, mean2, invstd2, a2v, b2v);
    bnAffine(weight3, bias3, mean3, invstd3, a3v, b3v);
    const float inf = std::numeric_limits<float>::infinity();
    // A frozen pool (transfer, adaptation) needs no weight gradients: their GEMMs are skipped.
    const bool needW1 = ctx->needs_input_grad(Args::kW1), needW3 = ctx->needs_input_grad(Args::kW3);
    const float *dyp = dy.data_ptr<float>(), *h3p = h3.data_ptr<float>();
    auto k3 = bnBackwardRows(dyp, h3p, M, Co, a3v, b3v, -inf, inf, weight3, mean3, invstd3);
    // project's backward, per chunk: dh3 (bn3's input gradient), g = dh3·w3, bn2's reductions, a2
    // again and w3's gradient
    const auto w3m = w3.reshape({Co, E}).contiguous();
    auto g = at::empty_like(h2, at::MemoryFormat::ChannelsLast);
    const float *w3p = w3m.data_ptr<float>(), *h2p = h2.data_ptr<float>(), *m2p = mean2.data_ptr<float>();
    float* gp = g.data_ptr<float>();
    auto r2 = reduceRows<double>(M, 1, 2 * E + (needW3 ? Co * E : 0), [&](int64_t b, int64_t n, double* acc) {
      std::vector<float> sums(2 * E, 0.0f), dWt(needW3 ? E * Co : 0, 0.0f), a2(kChunkRows * E), dh3(kChunkRows * Co);
      forChunks(b, n, [&](int64_t r0, int64_t rows) {
        gradInputRowsF(dyp + r0 * Co, h3p + r0 * Co, rows, Co, a3v.data(), b3v.data(), -inf, inf, k3.k1.data(), k3.k2.data(), k3.k3.data(), dh3.data());
        gemmRowsF(dh3.data(), rows, Co, w3p, E, gp + r0 * E);
        gradStatsRowsF(gp + r0 * E, h2p + r0 * E, rows, E, a2v.data(), b2v.data(), m2p, 0.0f, 6.0f, sums.data(), sums.data() + E);
        if (!needW3) return;
        normRowsF(h2p + r0 * E, rows, E, a2v.data(), b2v.data(), 0.0f, 6.0f, a2.data());
        // w3's gradient transposed, (a2ᵀ·dh3)ᵀ: the GEMM's 6-row tiles then run along E, the
        // longer side (BENCHMARKS.md, item 8)
        gemmTnAccF(a2.data(), E, dh3.data(), Co, rows, dWt.data());
      });
      addInto(acc, sums);
      addInto(acc + 2 * E, dWt);
    });
    auto k2 = bnBackward<float>(r2.data(), r2.data() + E, M, weight2, mean2, invstd2);
    auto dw3 = needW3 ? fromSums(r2.data() + 2 * E, E, Co, w3.options()).t().reshape(w3.sizes()) : at::Tensor();
    // the middle's backward pass → gm, the depthwise weight's gradient and bn1's reductions
    auto gm = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    auto acc = middleBackwardPass(g, h1, h2, a1v.data(), b1v.data(), a2v.data(), b2v.data(), k2, mean1, dw, gm, /*stream=*/true);
    g.reset();
    auto k1 = bnBackward<float>(acc.data() + 9 * E, acc.data() + 10 * E, M, weight1, mean1, invstd1);
    // expand's backward, per chunk: dh1 (bn1's input gradient), dx = dh1·w1 (+ dy), w1's gradient dh1ᵀ·x
    const auto w1m = w1.reshape({E, C}).contiguous();
    auto dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    const float *gmp = gm.data_ptr<float>(), *h1p = h1.data_ptr<float>(), *xp = x.data_ptr<float>(), *w1p = w1m.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    auto r1 = reduceRows<double>(M, 1, needW1 ? E * C : 0, [&](int64_t b, int64_t n, double* out) {
      std::vector<float> dW(needW1 ? E * C : 0, 0.0f), dh1(kChunkRows * E);
      forChunks(b, n, [&](int64_t r0, int64_t rows) {
        gradInputRowsF(gmp + r0 * E, h1p + r0 * E, rows, E, a1v.data(), b1v.data(), -inf, inf, k1.k1.data(), k1.k2.data(), k1.k3.data(), dh1.data());
        gemmRowsF(dh1.data(), rows, E, w1p, C, dxp + r0 * C, residual ? dyp + r0 * C : nullptr);
        if (needW1) gemmTnAccF(dh1.data(), E, xp + r0 * C, C, rows, dW.data());
      });
      addInto(out, dW);
    });
    auto dw1 = needW1 ? fromSums(r1.data(), E, C, w1.options()).view(w1.sizes()) : at::Tensor();
    auto out = gradientsFor<Args>();
    out[Args::kX] = dx;
    out[Args::kW1] = dw1;
    out[Args::kBn1Weight] = k1.dweight;
    out[Args::kBn1Bias] = k1.dbias;
    out[Args::kDw] = depthwiseGrad(acc, E, dw.options());
    out[Args::kBn2Weight] = k2.dweight;
    out[Args::kBn2Bias] = k2.dbias;
    out[Args::kW3] = dw3;
    out[Args::kBn3Weight] = k3.dweight;
    out[Args::kBn3Bias] = k3.dbias;
    return out;
  }
};

// Whether invertedBranch takes these: float32 channels-last x [N, C, H, W] with N·H·W > 1, w1
// [E, C, 1, 1], dw [E, 1, 3, 3], w3 [Co, E, 1, 1], with C, E and Co multiples of 16 (and Co = C
// for the residual connection); and a CPU with AVX-512 (the GEMMs' 6 x 64 register tiles need its
// 32 vector registers; elsewhere oneDNN's convolutions are the faster path).
inline bool invertedBranchApplies(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& dw, const at::Tensor& w3, bool residual) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  const auto isFloat = [](const at::Tensor& t) { return t.scalar_type() == at::kFloat && t.device().is_cpu(); };
  if (!avx512 || x.dim() != 4 || !isFloat(x) || !x.is_contiguous(at::MemoryFormat::ChannelsLast) || x.size(0) * x.size(2) * x.size(3) <= 1) return false;
  if (w1.dim() != 4 || !isFloat(w1) || w3.dim() != 4 || !isFloat(w3)) return false;
  const int64_t C = x.size(1), E = w1.size(0), Co = w3.size(0);
  return C % 16 == 0 && E % 16 == 0 && Co % 16 == 0 && (!residual || Co == C) && w1.sizes() == at::IntArrayRef{E, C, 1, 1} &&
         w3.sizes() == at::IntArrayRef{Co, E, 1, 1} && dw.dim() == 4 && isFloat(dw) && dw.sizes() == at::IntArrayRef{E, 1, 3, 3};
}

// [x +] bn3(conv1x1(relu6(bn2(depthwise3x3(relu6(bn1(conv1x1(x, w1)))))), w3)) in training mode
// (batch statistics; running ones updated); bn1's and bn2's tensors have E float32 values, bn3's Co.
inline at::Tensor invertedBranch(const InvertedBranchArgs& args) {
  const at::Tensor &x = args.x, &w1 = args.w1, &dw = args.dw, &w3 = args.w3;
  const bool residual = args.residual;
  if (!invertedBranchApplies(x, w1, dw, w3, residual)) {
    std::ostringstream s;
    s << "invertedBranch: needs an AVX-512 CPU, float32 channels-last input [N, C, H, W] and weights [E, C, 1, 1], [E, 1, 3, 3], [Co, E, 1, 1] with C, E "
         "and Co multiples of 16"
      << (residual ? " and Co = C (residual)" : "") << "; got input " << x.sizes() << " " << x.scalar_type()
      << (x.is_contiguous(at::MemoryFormat::ChannelsLast) ? "" : " (not channels-last)") << ", weights " << w1.sizes() << ", " << dw.sizes() << ", "
      << w3.sizes();
    throw std::invalid_argument(s.str());
  }
  checkNorms("invertedBranch", x, w1.size(0), {&args.bn1, &args.bn2});
  checkNorms("invertedBranch", x, w3.size(0), {&args.bn3});
  auto a = args;
  a.bn1 = withContiguousAffine(a.bn1);
  a.bn2 = withContiguousAffine(a.bn2);
  a.bn3 = withContiguousAffine(a.bn3);
  a.dw = a.dw.contiguous();
  return applyNamed<InvertedBranch>(a);
}

}  // namespace compnet
