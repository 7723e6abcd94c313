// The middle of an inverted-residual block in training mode, as one op with its own backward:
//
//   a2 = relu6(bn2(depthwise3x3(relu6(bn1(h1)))))
//
// for a channels-last float32 h1 [N, E, H, W] (E a multiple of 16), batch statistics, zero padding.
//
// Why: these five ops sweep the block's largest tensors (64·256·16·16 floats = 16 MiB in the
// reference network) about 21 times per training step, more than the L3 cache holds, and the
// convolutions around them are already near the machine's GEMM speed. Fused, the depthwise
// convolution reads h1 and applies bn1 + ReLU6 as it loads; bn2's statistics are summed as its
// output is written; in backward, bn2's input gradient, the depthwise convolution's input and
// weight gradients and bn1's reductions are one pass over rows with a three-row ring buffer.
// That is 14 sweeps instead of 21, and the tensors relu6(bn1(h1)) and the gradients between the
// ops are never stored (BENCHMARKS.md, "Changes applied", item 7).
//
// The 3x3 convolution is register-blocked: 16 channels (one AVX-512 vector; GCC splits it on
// narrower ISAs) by kTile outputs of a row stay in registers while each input vector is loaded
// once and feeds up to three outputs.
#pragma once

#include <torch/torch.h>

#include <cstring>
#include <sstream>
#include <vector>

#include "batch_norm_act.h"
#include "kernel_support.h"

namespace compnet {

#pragma GCC push_options
#pragma GCC optimize("O3")

typedef float V16 __attribute__((vector_size(64)));
constexpr int64_t kTile = 8;

COMPNET_INLINE V16 load16(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
COMPNET_INLINE void store16(float* p, V16 v) { std::memcpy(p, &v, sizeof v); }
COMPNET_INLINE V16 splat(float f) { return V16{} + f; }
// clamp(v·a + b, 0, 6): bn1 + ReLU6 on load.
COMPNET_INLINE V16 act06(V16 v, V16 a, V16 b) {
  v = v * a + b;
  const V16 z{}, six = splat(6.0f);
  v = v < z ? z : v;
  return v > six ? six : v;
}

// Outputs [ow0, ow0 + kTile) of one row, channels [c0, c0 + 16): acc[o] = Σ_{i,j} in_i[ow0+o+j-1]·w[3i+j],
// where in_i is rows[i] (null: a zero row of padding). With kAct the inputs pass through act06 first.
template <bool kAct>
COMPNET_INLINE void tile3(const float* const* rows, int64_t W, int64_t C, int64_t ow0, int64_t c0, const V16* w, V16 A, V16 B, V16* acc) {
#pragma GCC unroll 16
  for (int64_t o = 0; o < kTile; ++o) acc[o] = V16{};
  for (int64_t i = 0; i < 3; ++i) {
    if (!rows[i]) continue;
    const float* xr = rows[i] + c0;
#pragma GCC unroll 16
    for (int64_t t = -1; t <= kTile; ++t) {
      const int64_t iw = ow0 + t;
      if (iw < 0 || iw >= W) continue;
      V16 xv = load16(xr + iw * C);
      if constexpr (kAct) xv = act06(xv, A, B);
      // input column t feeds output t+1 (tap j = 0), t (j = 1) and t-1 (j = 2)
      if (t + 1 >= 0 && t + 1 < kTile) acc[t + 1] += xv * w[i * 3];
      if (t >= 0 && t < kTile) acc[t] += xv * w[i * 3 + 1];
      if (t - 1 >= 0 && t - 1 < kTile) acc[t - 1] += xv * w[i * 3 + 2];
    }
  }
}

// One output row (W·C values) of the 3x3 depthwise convolution; taps are [9][C]. With kAct the
// inputs are act06(·, a, b); with sum/sq non-null, Σout and Σout² per channel are added to them.
template <bool kAct>
COMPNET_INLINE void dwRow3(const float* const* rows, int64_t W, int64_t C, const float* taps, const float* a, const float* b, float* out, double* sum, double* sq) {
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    V16 w[9];
    for (int q = 0; q < 9; ++q) w[q] = load16(taps + q * C + c0);
    const V16 A = kAct ? load16(a + c0) : V16{}, B = kAct ? load16(b + c0) : V16{};
    V16 s{}, s2{};
    for (int64_t ow0 = 0; ow0 < W; ow0 += kTile) {
      V16 acc[kTile];
      tile3<kAct>(rows, W, C, ow0, c0, w, A, B, acc);
      const int64_t n = std::min<int64_t>(kTile, W - ow0);
#pragma GCC unroll 16
      for (int64_t o = 0; o < kTile; ++o)
        if (o < n) {
          store16(out + (ow0 + o) * C + c0, acc[o]);
          s += acc[o];
          s2 += acc[o] * acc[o];
        }
    }
    if (sum)
      for (int l = 0; l < 16; ++l) {
        sum[c0 + l] += s[l];
        sq[c0 + l] += s2[l];
      }
  }
}

// Weight gradient of one output row: acc[3i+j, c] += Σ_ow g[ow, c]·act06(rows[i][ow+j-1, c]).
// acc is float (one image's rows at a time; the caller sums images in double).
COMPNET_INLINE void dwWeightRow3(const float* g, const float* const* rows, int64_t W, int64_t C, const float* a, const float* b, float* acc) {
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    const V16 A = load16(a + c0), B = load16(b + c0);
    V16 s[9];
    for (int q = 0; q < 9; ++q) s[q] = V16{};
    for (int64_t i = 0; i < 3; ++i) {
      if (!rows[i]) continue;
      const float* xr = rows[i] + c0;
      // sliding window over the input row: left, centre, right of output ow
      V16 left{}, centre = act06(load16(xr), A, B);
      for (int64_t ow = 0; ow < W; ++ow) {
        const V16 right = ow + 1 < W ? act06(load16(xr + (ow + 1) * C), A, B) : V16{};
        const V16 gv = load16(g + ow * C + c0);
        s[i * 3] += gv * left;
        s[i * 3 + 1] += gv * centre;
        s[i * 3 + 2] += gv * right;
        left = centre;
        centre = right;
      }
    }
    for (int q = 0; q < 9; ++q) store16(acc + q * C + c0, load16(acc + q * C + c0) + s[q]);
  }
}

// bn1's backward inputs for one row of n pixels: gm = da1 where 0 < h1·a + b < 6 (else 0),
// written out; sg[c] += Σgm, sgx[c] += Σgm·(h1 − mean). The row's sums go through float scratch
// (2·C values): GCC does not vectorise the loop with double accumulators.
COMPNET_INLINE void maskRow(const float* __restrict da1, const float* __restrict h1, int64_t n, int64_t C, const float* __restrict a, const float* __restrict b,
                            const float* __restrict mean, float* __restrict gm, float* __restrict scratch, double* __restrict sg, double* __restrict sgx) {
  float* __restrict s1 = scratch;
  float* __restrict s2 = scratch + C;
  for (int64_t c = 0; c < C; ++c) s1[c] = s2[c] = 0.0f;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float x = h1[r * C + c], v = x * a[c] + b[c];
      const float g = (v > 0.0f && v < 6.0f) ? da1[r * C + c] : 0.0f;
      gm[r * C + c] = g;
      s1[c] += g;
      s2[c] += g * (x - mean[c]);
    }
  for (int64_t c = 0; c < C; ++c) {
    sg[c] += s1[c];
    sgx[c] += s2[c];
  }
}

COMPNET_CLONES void dwRow3Act(const float* const* rows, int64_t W, int64_t C, const float* taps, const float* a, const float* b, float* out, double* sum, double* sq) {
  dwRow3<true>(rows, W, C, taps, a, b, out, sum, sq);
}
COMPNET_CLONES void dwRow3Plain(const float* const* rows, int64_t W, int64_t C, const float* taps, float* out) {
  dwRow3<false>(rows, W, C, taps, nullptr, nullptr, out, nullptr, nullptr);
}
COMPNET_CLONES void dwWeightRow3F(const float* g, const float* const* rows, int64_t W, int64_t C, const float* a, const float* b, float* acc) {
  dwWeightRow3(g, rows, W, C, a, b, acc);
}
COMPNET_CLONES void maskRowF(const float* da1, const float* h1, int64_t n, int64_t C, const float* a, const float* b, const float* mean, float* gm, float* scratch,
                             double* sg, double* sgx) {
  maskRow(da1, h1, n, C, a, b, mean, gm, scratch, sg, sgx);
}

#pragma GCC pop_options

// The three input rows around output row oh of image img (null outside the image).
inline void rowsAround(const float* img, int64_t H, int64_t rowLen, int64_t oh, const float* rows[3]) {
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t ih = oh + i - 1;
    rows[i] = ih >= 0 && ih < H ? img + ih * rowLen : nullptr;
  }
}

// w [E, 1, 3, 3] → taps [9][E]; flipped: tap (i, j) takes w[2-i, 2-j] (the input gradient is the
// same convolution with the kernel turned by 180°).
inline at::Tensor tapsOf(const at::Tensor& w, bool flipped) {
  auto t = flipped ? w.flip({2, 3}) : w;
  return t.reshape({w.size(0), 9}).t().contiguous();
}

struct InvertedMiddle : public torch::autograd::Function<InvertedMiddle> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h1, const at::Tensor& weight1, const at::Tensor& bias1,
                            const at::Tensor& runningMean1, const at::Tensor& runningVar1, const at::Tensor& dw, const at::Tensor& weight2,
                            const at::Tensor& bias2, const at::Tensor& runningMean2, const at::Tensor& runningVar2, double momentum, double eps) {
    const int64_t N = h1.size(0), E = h1.size(1), H = h1.size(2), W = h1.size(3), M = N * H * W, rowLen = W * E;
    const float* xp = h1.data_ptr<float>();
    // bn1: statistics of h1
    auto m1 = reduceRows<double>(M, E, 2, [&](int64_t b, int64_t n, double* acc) { statsRowsT(xp + b * E, n, E, acc, acc + E); });
    auto f1 = bnForward<float>(m1, M, E, eps, weight1, bias1, h1.options());
    // depthwise conv of relu6(bn1(h1)) → h2, with bn2's moments
    auto h2 = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    float* h2p = h2.data_ptr<float>();
    const auto taps = tapsOf(dw, false);
    const float* tp = taps.data_ptr<float>();
    auto m2 = reduceRows<double>(
        N * H, E, 2,
        [&](int64_t b, int64_t n, double* acc) {
          for (int64_t r = b; r < b + n; ++r) {
            const float* rows[3];
            rowsAround(xp + (r / H) * H * rowLen, H, rowLen, r % H, rows);
            dwRow3Act(rows, W, E, tp, f1.a.data(), f1.shift.data(), h2p + r * rowLen, acc, acc + E);
          }
        },
        4);
    auto f2 = bnForward<float>(m2, M, E, eps, weight2, bias2, h1.options());
    auto a2 = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    float* a2p = a2.data_ptr<float>();
    at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) { normRowsT(h2p + b * E, e - b, E, f2.a.data(), f2.shift.data(), 0.0f, 6.0f, a2p + b * E); });
    bnUpdateRunning(runningMean1, runningVar1, f1, momentum);
    bnUpdateRunning(runningMean2, runningVar2, f2, momentum);
    ctx->save_for_backward({h1, weight1, bias1, f1.mean, f1.invstd, dw, h2, weight2, bias2, f2.mean, f2.invstd});
    return a2;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const auto &h1 = s[0], &weight1 = s[1], &bias1 = s[2], &mean1 = s[3], &invstd1 = s[4], &dw = s[5];
    const auto &h2 = s[6], &weight2 = s[7], &bias2 = s[8], &mean2 = s[9], &invstd2 = s[10];
    const int64_t N = h1.size(0), E = h1.size(1), H = h1.size(2), W = h1.size(3), M = N * H * W, rowLen = W * E;
    auto g = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const float *gp = g.data_ptr<float>(), *xp = h1.data_ptr<float>(), *h2p = h2.data_ptr<float>();
    std::vector<float> a1, b1, a2, b2;
    bnAffine(weight1, bias1, mean1, invstd1, a1, b1);
    bnAffine(weight2, bias2, mean2, invstd2, a2, b2);
    // bn2 (+ReLU6) backward: its reductions, then its input gradient dh2 on the fly below
    auto r2 = reduceRows<float>(M, E, 2, [&](int64_t b, int64_t n, float* acc) {
      gradStatsRowsT(gp + b * E, h2p + b * E, n, E, a2.data(), b2.data(), mean2.data_ptr<float>(), 0.0f, 6.0f, acc, acc + E);
    });
    auto k2 = bnBackward<float>(r2.data(), r2.data() + E, M, weight2, mean2, invstd2);
    // One pass per image: dh2 rows into a ring of three, the depthwise weight gradient, the
    // depthwise input gradient (bn1's output gradient) masked by ReLU6 → gm, and bn1's reductions.
    auto gm = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    float* gmp = gm.data_ptr<float>();
    const auto flipped = tapsOf(dw, true);
    const float* fp = flipped.data_ptr<float>();
    const float* m1p = mean1.data_ptr<float>();
    auto acc = reduceRows<double>(
        N, E, 11,
        [&](int64_t b, int64_t n, double* out) {
          double* dwAcc = out;  // [9][E]
          double* sg1 = out + 9 * E;
          double* sgx1 = out + 10 * E;
          std::vector<float> ring(3 * rowLen), da1(rowLen), scratch(2 * E), dwImg(9 * E);
          for (int64_t img = b; img < b + n; ++img) {
            std::fill(dwImg.begin(), dwImg.end(), 0.0f);
            const int64_t base = img * H * rowLen;
            auto finish = [&](int64_t ih) {
              const float* rows[3] = {ih >= 1 ? ring.data() + ((ih - 1) % 3) * rowLen : nullptr, ring.data() + (ih % 3) * rowLen,
                                      ih + 1 < H ? ring.data() + ((ih + 1) % 3) * rowLen : nullptr};
              dwRow3Plain(rows, W, E, fp, da1.data());
              maskRowF(da1.data(), xp + base + ih * rowLen, W, E, a1.data(), b1.data(), m1p, gmp + base + ih * rowLen, scratch.data(), sg1, sgx1);
            };
            for (int64_t oh = 0; oh < H; ++oh) {
              float* d = ring.data() + (oh % 3) * rowLen;
              const int64_t off = base + oh * rowLen;
              gradInputRowsT(gp + off, h2p + off, W, E, a2.data(), b2.data(), 0.0f, 6.0f, k2.k1.data(), k2.k2.data(), k2.k3.data(), d);
              const float* rows[3];
              rowsAround(xp + base, H, rowLen, oh, rows);
              dwWeightRow3F(d, rows, W, E, a1.data(), b1.data(), dwImg.data());
              if (oh >= 1) finish(oh - 1);
            }
            finish(H - 1);
            for (int64_t q = 0; q < 9 * E; ++q) dwAcc[q] += dwImg[q];
          }
        },
        1);
    auto k1 = bnBackward<float>(acc.data() + 9 * E, acc.data() + 10 * E, M, weight1, mean1, invstd1);
    // bn1's input gradient from gm
    auto dh1 = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    float* dp = dh1.data_ptr<float>();
    const float inf = std::numeric_limits<float>::infinity();
    at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
      gradInputRowsT(gmp + b * E, xp + b * E, e - b, E, a1.data(), b1.data(), -inf, inf, k1.k1.data(), k1.k2.data(), k1.k3.data(), dp + b * E);
    });
    auto ddw = at::empty({E, 1, 3, 3}, dw.options());
    float* ddp = ddw.data_ptr<float>();
    for (int64_t q = 0; q < 9; ++q)
      for (int64_t c = 0; c < E; ++c) ddp[c * 9 + q] = static_cast<float>(acc[q * E + c]);
    const at::Tensor none;
    return {dh1, k1.dweight, k1.dbias, none, none, ddw, k2.dweight, k2.dbias, none, none, none, none};
  }
};

// Whether invertedMiddle takes h1 and a depthwise weight: float32 channels-last h1 [N, E, H, W]
// with E a multiple of 16 and N·H·W > 1, weight [E, 1, 3, 3].
inline bool invertedMiddleApplies(const at::Tensor& h1, const at::Tensor& dw) {
  return h1.dim() == 4 && h1.scalar_type() == at::kFloat && h1.device().is_cpu() && h1.is_contiguous(at::MemoryFormat::ChannelsLast) && h1.size(1) % 16 == 0 &&
         h1.size(0) * h1.size(2) * h1.size(3) > 1 && dw.dim() == 4 && dw.scalar_type() == at::kFloat && dw.size(0) == h1.size(1) && dw.size(1) == 1 &&
         dw.size(2) == 3 && dw.size(3) == 3;
}

// relu6(bn2(depthwise3x3(relu6(bn1(h1))))) in training mode (batch statistics; running ones
// updated); every per-channel tensor has E float32 values.
inline at::Tensor invertedMiddle(const at::Tensor& h1, const at::Tensor& weight1, const at::Tensor& bias1, const at::Tensor& runningMean1,
                                 const at::Tensor& runningVar1, const at::Tensor& dw, const at::Tensor& weight2, const at::Tensor& bias2,
                                 const at::Tensor& runningMean2, const at::Tensor& runningVar2, double momentum, double eps) {
  if (!invertedMiddleApplies(h1, dw)) {
    std::ostringstream s;
    s << "invertedMiddle: needs float32 channels-last input [N, E, H, W] with E a multiple of 16 and weight [E, 1, 3, 3]; got input " << h1.sizes() << " "
      << h1.scalar_type() << (h1.is_contiguous(at::MemoryFormat::ChannelsLast) ? "" : " (not channels-last)") << ", weight " << dw.sizes() << " "
      << dw.scalar_type();
    throw std::invalid_argument(s.str());
  }
  const int64_t E = h1.size(1);
  for (const auto* t : {&weight1, &bias1, &runningMean1, &runningVar1, &weight2, &bias2, &runningMean2, &runningVar2}) {
    if (!t->defined() || t->numel() != E) {
      std::ostringstream s;
      s << "invertedMiddle: every batch-norm tensor must have " << E << " values, got " << (t->defined() ? t->sizes() : at::IntArrayRef{});
      throw std::invalid_argument(s.str());
    }
    checkPerChannel(*t, h1, E, "invertedMiddle");
  }
  return InvertedMiddle::apply(h1, weight1.contiguous(), bias1.contiguous(), runningMean1, runningVar1, dw.contiguous(), weight2.contiguous(), bias2.contiguous(),
                               runningMean2, runningVar2, momentum, eps);
}

}  // namespace compnet
