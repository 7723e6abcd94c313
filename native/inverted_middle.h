// The middle of an inverted-residual block in training mode, as one op with its own backward:
//
//   a2 = relu6(bn2(depthwise3x3(relu6(bn1(h1)))))
//
// for a channels-last float32 h1 [N, E, H, W] (E a multiple of 16), batch statistics, zero padding.
//
// Why: these five ops sweep the block's largest tensors (64·256·16·16 floats = 16 MiB in the
// reference network, more than the L2 and half the L3 cache) about 21 times per training step,
// and they are memory-bound, while the convolutions around them already run near the machine's
// GEMM speed. Fused, they take 14 sweeps, and the tensors relu6(bn1(h1)) and the gradients
// between the ops are never stored (BENCHMARKS.md, "Changes applied", item 7):
//   forward:  bn1's moments (read h1); per image, rows of a1 = relu6(bn1(h1)) into a ring of three
//             padded rows, the depthwise convolution of each row → h2, bn2's moments summed from
//             registers (read h1, write h2); bn2 + ReLU6 (read h2, write a2);
//   backward: bn2's reductions (read g, h2); per image, a1 and bn2's input gradient dh2 row by row
//             into rings, the depthwise weight gradient, its input gradient masked by ReLU6 → gm,
//             and bn1's reductions (read g, h2, h1, write gm); bn1's input gradient (read gm, h1,
//             write dh1).
//
// The 3x3 convolution is register-blocked: 16 channels (one AVX-512 vector; GCC splits it on
// narrower ISAs) by kTile outputs of a row stay in registers while each input vector is loaded
// once and feeds up to three outputs.
#pragma once

#include <torch/torch.h>

#include <cstring>
#include <sstream>
#include <vector>

#include "autograd_support.h"
#include "batch_norm_act.h"
#include "generated/op_structs.h"
#include "kernel_support.h"

namespace compnet {

#pragma GCC push_options
// -std=c++17 turns off GCC's contraction of a·b + c into FMA; these loops want it.
#pragma GCC optimize("O3", "fp-contract=fast")

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

// Rows here are padded: one zero pixel at each end (W + 2 pixels of C channels), so the 3x3
// stencil needs no bounds checks.
//
// Outputs [ow0, ow0 + TW) of one row, channels [c0, c0 + 16): acc[o] = Σ_{i,j} in_i[ow0+o+j]·w[3i+j]
// (padded indices), where in_i is rows[i] (null: a zero row of padding). TW is a constant, so the
// loops unroll and acc stays in registers.
template <int TW>
COMPNET_INLINE void tile3(const float* const* rows, int64_t C, int64_t ow0, int64_t c0, const V16* w, float* out, V16& s, V16& s2) {
  V16 acc[TW];
#pragma GCC unroll 16
  for (int o = 0; o < TW; ++o) acc[o] = V16{};
#pragma GCC unroll 3
  for (int i = 0; i < 3; ++i) {
    if (!rows[i]) continue;
    const float* xr = rows[i] + ow0 * C + c0;
#pragma GCC unroll 16
    for (int t = 0; t < TW + 2; ++t) {
      const V16 xv = load16(xr + t * C);
      // padded input column t feeds output t (tap j = 0), t-1 (j = 1) and t-2 (j = 2)
      if (t < TW) acc[t] += xv * w[i * 3];
      if (t >= 1 && t - 1 < TW) acc[t - 1] += xv * w[i * 3 + 1];
      if (t >= 2) acc[t - 2] += xv * w[i * 3 + 2];
    }
  }
#pragma GCC unroll 16
  for (int o = 0; o < TW; ++o) {
    store16(out + (ow0 + o) * C + c0, acc[o]);
    s += acc[o];
    s2 += acc[o] * acc[o];
  }
}

// One output row (W·C values, unpadded) of the 3x3 depthwise convolution of padded rows[0..2];
// taps are [9][C]. With sum/sq non-null, Σout and Σout² per channel are added to them (summed
// from registers: reading the row back would wait for its stores' cache lines).
COMPNET_INLINE void dwRow3(const float* const* rows, int64_t W, int64_t C, const float* taps, float* out, double* sum, double* sq) {
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    V16 w[9];
    for (int q = 0; q < 9; ++q) w[q] = load16(taps + q * C + c0);
    V16 s{}, s2{};
    int64_t ow0 = 0;
    for (; ow0 + kTile <= W; ow0 += kTile) tile3<kTile>(rows, C, ow0, c0, w, out, s, s2);
    for (; ow0 < W; ++ow0) tile3<1>(rows, C, ow0, c0, w, out, s, s2);
    if (sum) {
      for (int l = 0; l < 16; ++l) {
        sum[c0 + l] += s[l];
        sq[c0 + l] += s2[l];
      }
    }
  }
}

// One row of relu6(bn1(h1)): a1 = clamp(h1·a + b, 0, 6) over n pixels of C channels.
COMPNET_INLINE void actRow(const float* __restrict h1, int64_t n, int64_t C, const float* __restrict a, const float* __restrict b, float* __restrict a1) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float v = h1[r * C + c] * a[c] + b[c];
      a1[r * C + c] = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    }
}

// Weight gradient of one output row: acc[3i+j, c] += Σ_ow g[ow, c]·rows[i][ow+j, c] (rows padded;
// acc is float: one image's rows at a time, the caller sums images in double).
COMPNET_INLINE void dwWeightRow3(const float* g, const float* const* rows, int64_t W, int64_t C, float* acc) {
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    V16 s[9];
    for (int q = 0; q < 9; ++q) s[q] = V16{};
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i) {
      if (!rows[i]) continue;
      const float* xr = rows[i] + c0;
      // sliding window over the padded input row: left, centre, right of output ow
      V16 left = load16(xr), centre = load16(xr + C);
      for (int64_t ow = 0; ow < W; ++ow) {
        const V16 right = load16(xr + (ow + 2) * C);
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

// bn1's backward inputs for one row of n pixels: gm = da1 where ReLU6 passed its input (0 < a1 < 6,
// the same as 0 < bn1(h1) < 6), else 0, written out; sg[c] += Σgm, sgx[c] += Σgm·(h1 − mean).
// The row's sums go through float scratch (2·C values): GCC does not vectorise the loop with
// double accumulators.
COMPNET_INLINE void maskRow(const float* __restrict da1, const float* __restrict a1, const float* __restrict h1, int64_t n, int64_t C,
                            const float* __restrict mean, float* __restrict gm, float* __restrict scratch, double* __restrict sg, double* __restrict sgx) {
  float* __restrict s1 = scratch;
  float* __restrict s2 = scratch + C;
  for (int64_t c = 0; c < C; ++c) s1[c] = s2[c] = 0.0f;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float v = a1[r * C + c];
      const float g = (v > 0.0f && v < 6.0f) ? da1[r * C + c] : 0.0f;
      gm[r * C + c] = g;
      s1[c] += g;
      s2[c] += g * (h1[r * C + c] - mean[c]);
    }
  for (int64_t c = 0; c < C; ++c) {
    sg[c] += s1[c];
    sgx[c] += s2[c];
  }
}

COMPNET_CLONES void dwRow3F(const float* const* rows, int64_t W, int64_t C, const float* taps, float* out, double* sum, double* sq) {
  dwRow3(rows, W, C, taps, out, sum, sq);
}
COMPNET_CLONES void actRowF(const float* h1, int64_t n, int64_t C, const float* a, const float* b, float* a1) { actRow(h1, n, C, a, b, a1); }
COMPNET_CLONES void dwWeightRow3F(const float* g, const float* const* rows, int64_t W, int64_t C, float* acc) { dwWeightRow3(g, rows, W, C, acc); }
COMPNET_CLONES void maskRowF(const float* da1, const float* a1, const float* h1, int64_t n, int64_t C, const float* mean, float* gm, float* scratch, double* sg,
                             double* sgx) {
  maskRow(da1, a1, h1, n, C, mean, gm, scratch, sg, sgx);
}

#pragma GCC pop_options

// Three padded rows of one image, kept while an image is swept row by row: row r lives in slot
// r % 3; row(r) is its first pixel (the zero border), at(r) its first real pixel.
struct RowRing {
  std::vector<float> buf;  // zero-initialised: the borders stay zero
  int64_t padLen, C, H;
  RowRing(int64_t W, int64_t C, int64_t H) : buf(3 * (W + 2) * C, 0.0f), padLen((W + 2) * C), C(C), H(H) {}
  float* row(int64_t r) { return buf.data() + (r % 3) * padLen; }
  float* at(int64_t r) { return row(r) + C; }
  // rows r-1, r, r+1 (null outside the image: zero padding)
  void around(int64_t r, const float* rows[3]) {
    for (int64_t i = 0; i < 3; ++i) rows[i] = r + i - 1 >= 0 && r + i - 1 < H ? row(r + i - 1) : nullptr;
  }
};

// Sweeps one image (h1: its first row) row by row, keeping rows r-1..r+1 of relu6(h1·a + b) in
// `a1` when body(r) runs: each row is made once.
template <typename Body>
void sweepRows(const float* h1, int64_t W, int64_t C, int64_t H, const float* a, const float* b, RowRing& a1, const Body& body) {
  actRowF(h1, W, C, a, b, a1.at(0));
  for (int64_t r = 0; r < H; ++r) {
    if (r + 1 < H) actRowF(h1 + (r + 1) * W * C, W, C, a, b, a1.at(r + 1));
    body(r);
  }
}

// w [E, 1, 3, 3] → taps [9][E]; flipped: tap (i, j) takes w[2-i, 2-j] (the input gradient is the
// same convolution with the kernel turned by 180°).
inline at::Tensor tapsOf(const at::Tensor& w, bool flipped) {
  auto t = flipped ? w.flip({2, 3}) : w;
  return t.reshape({w.size(0), 9}).t().contiguous();
}

// The forward pass of the middle once bn1's statistics are known (a1 = h1·a1v + b1v, clamped):
// the depthwise convolution of a1 → h2 (preallocated, channels-last), with bn2's moments
// (Σh2, Σh2², E values each). Per image, a1's rows are made once each into a ring of three.
// With `stream` (AVX-512 CPUs only, see streamCopy), h2's rows go through a row buffer and are
// written with non-temporal stores.
inline std::vector<double> middleForwardPass(const at::Tensor& h1, const float* a1v, const float* b1v, const at::Tensor& dw, at::Tensor& h2,
                                             bool stream = false) {
  const int64_t N = h1.size(0), E = h1.size(1), H = h1.size(2), W = h1.size(3), rowLen = W * E;
  const float* xp = h1.data_ptr<float>();
  float* h2p = h2.data_ptr<float>();
  const auto taps = tapsOf(dw, false);
  const float* tp = taps.data_ptr<float>();
  return reduceRows<double>(
      N, E, 2,
      [&](int64_t b, int64_t n, double* acc) {
        RowRing a1(W, E, H);
        std::vector<float> row(stream ? rowLen : 0);
        for (int64_t img = b; img < b + n; ++img) {
          const int64_t base = img * H * rowLen;
          sweepRows(xp + base, W, E, H, a1v, b1v, a1, [&](int64_t oh) {
            const float* rows[3];
            a1.around(oh, rows);
            float* out = h2p + base + oh * rowLen;
            dwRow3F(rows, W, E, tp, stream ? row.data() : out, acc, acc + E);
            if (stream) streamCopy(row.data(), rowLen, out);
          });
        }
        if (stream) streamFence();
      },
      1);
}

// The backward pass of the middle once bn2's reductions are known (k2): one pass per image, rows
// in order: a1 = relu6(bn1(h1)) and dh2 (bn2's input gradient, from g and h2) rows into rings of
// three; the depthwise weight gradient; the depthwise input gradient (bn1's output gradient)
// masked by ReLU6 → gm (preallocated); bn1's reductions. Returns [9][E] depthwise weight
// gradient, then Σgm and Σgm·(h1 − mean1) (E each). With `stream` (AVX-512 CPUs only), gm's rows
// are written with non-temporal stores, as h2's in middleForwardPass.
inline std::vector<double> middleBackwardPass(const at::Tensor& g, const at::Tensor& h1, const at::Tensor& h2, const float* a1v, const float* b1v,
                                              const float* a2v, const float* b2v, const BnBackward<float>& k2, const at::Tensor& mean1,
                                              const at::Tensor& dw, at::Tensor& gm, bool stream = false) {
  const int64_t N = h1.size(0), E = h1.size(1), H = h1.size(2), W = h1.size(3), rowLen = W * E;
  const float *gp = g.data_ptr<float>(), *xp = h1.data_ptr<float>(), *h2p = h2.data_ptr<float>();
  float* gmp = gm.data_ptr<float>();
  const auto flipped = tapsOf(dw, true);
  const float* fp = flipped.data_ptr<float>();
  const float* m1p = mean1.data_ptr<float>();
  return reduceRows<double>(
      N, E, 11,
      [&](int64_t b, int64_t n, double* out) {
        double* dwAcc = out;  // [9][E]
        double* sg1 = out + 9 * E;
        double* sgx1 = out + 10 * E;
        RowRing a1(W, E, H), dh2(W, E, H);
        std::vector<float> da1(rowLen), scratch(2 * E), dwImg(9 * E), row(stream ? rowLen : 0);
        for (int64_t img = b; img < b + n; ++img) {
          const int64_t base = img * H * rowLen;
          std::fill(dwImg.begin(), dwImg.end(), 0.0f);
          const float* rows[3];
          auto finish = [&](int64_t ih) {
            dh2.around(ih, rows);
            dwRow3F(rows, W, E, fp, da1.data(), nullptr, nullptr);
            float* out = gmp + base + ih * rowLen;
            maskRowF(da1.data(), a1.at(ih), xp + base + ih * rowLen, W, E, m1p, stream ? row.data() : out, scratch.data(), sg1, sgx1);
            if (stream) streamCopy(row.data(), rowLen, out);
          };
          sweepRows(xp + base, W, E, H, a1v, b1v, a1, [&](int64_t oh) {
            const int64_t off = base + oh * rowLen;
            gradInputRowsT(gp + off, h2p + off, W, E, a2v, b2v, 0.0f, 6.0f, k2.k1.data(), k2.k2.data(), k2.k3.data(), dh2.at(oh));
            a1.around(oh, rows);
            dwWeightRow3F(dh2.at(oh), rows, W, E, dwImg.data());
            if (oh >= 1) finish(oh - 1);
          });
          finish(H - 1);
          for (int64_t q = 0; q < 9 * E; ++q) dwAcc[q] += dwImg[q];
        }
        if (stream) streamFence();
      },
      1);
}

// A [rows, cols] float tensor from double sums.
inline at::Tensor fromSums(const double* sums, int64_t rows, int64_t cols, const at::TensorOptions& opts) {
  auto t = at::empty({rows, cols}, opts);
  float* p = t.data_ptr<float>();
  for (int64_t k = 0; k < rows * cols; ++k) p[k] = static_cast<float>(sums[k]);
  return t;
}

// The depthwise weight gradient [E, 1, 3, 3] from middleBackwardPass's [9][E] sums.
inline at::Tensor depthwiseGrad(const std::vector<double>& acc, int64_t E, const at::TensorOptions& opts) {
  return fromSums(acc.data(), 9, E, opts).t().reshape({E, 1, 3, 3});
}

struct InvertedMiddle : public torch::autograd::Function<InvertedMiddle> {
  using Args = InvertedMiddleArgs;
  // What backward needs, by name.
  struct Saved {
    at::Tensor h1, weight1, bias1, mean1, invstd1, dw, h2, weight2, bias2, mean2, invstd2;
    template <typename F>
    void each(F&& f) { f(h1); f(weight1); f(bias1); f(mean1); f(invstd1); f(dw); f(h2); f(weight2); f(bias2); f(mean2); f(invstd2); }
  };

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::TensorList, const Args& a) {
    const at::Tensor& h1 = a.h1;
    const int64_t E = h1.size(1), M = h1.numel() / E;
    const float* xp = h1.data_ptr<float>();
    // bn1: statistics of h1
    auto f1 = bnForwardRows(xp, M, E, a.eps, a.bn1.weight, a.bn1.bias, h1.options());
    auto h2 = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    auto m2 = middleForwardPass(h1, f1.a.data(), f1.shift.data(), a.dw, h2);
    auto f2 = bnForward<float>(m2, M, E, a.eps, a.bn2.weight, a.bn2.bias, h1.options());
    auto a2 = at::empty_like(h1, at::MemoryFormat::ChannelsLast);
    const float* h2p = h2.data_ptr<float>();
    float* a2p = a2.data_ptr<float>();
    at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) { normRowsT(h2p + b * E, e - b, E, f2.a.data(), f2.shift.data(), 0.0f, 6.0f, a2p + b * E); });
    bnUpdateRunning(a.bn1.runningMean, a.bn1.runningVar, f1, a.momentum);
    bnUpdateRunning(a.bn2.runningMean, a.bn2.runningVar, f2, a.momentum);
    save(ctx, Saved{h1, a.bn1.weight, a.bn1.bias, f1.mean, f1.invstd, a.dw, h2, a.bn2.weight, a.bn2.bias, f2.mean, f2.invstd});
    return a2;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto s = load<Saved>(ctx);
    const int64_t E = s.h1.size(1), M = s.h1.numel() / E;
    auto g = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const float *gp = g.data_ptr<float>(), *xp = s.h1.data_ptr<float>(), *h2p = s.h2.data_ptr<float>();
    std::vector<float> a1v, b1v, a2, b2;
    bnAffine(s.weight1, s.bias1, s.mean1, s.invstd1, a1v, b1v);
    bnAffine(s.weight2, s.bias2, s.mean2, s.invstd2, a2, b2);
    // bn2 (+ReLU6) backward: its reductions, then its input gradient dh2 on the fly below
    auto k2 = bnBackwardRows(gp, h2p, M, E, a2, b2, 0.0f, 6.0f, s.weight2, s.mean2, s.invstd2);
    auto gm = at::empty_like(s.h1, at::MemoryFormat::ChannelsLast);
    auto acc = middleBackwardPass(g, s.h1, s.h2, a1v.data(), b1v.data(), a2.data(), b2.data(), k2, s.mean1, s.dw, gm);
    const float* gmp = gm.data_ptr<float>();
    auto k1 = bnBackward<float>(acc.data() + 9 * E, acc.data() + 10 * E, M, s.weight1, s.mean1, s.invstd1);
    // bn1's input gradient from gm
    auto dh1 = at::empty_like(s.h1, at::MemoryFormat::ChannelsLast);
    float* dp = dh1.data_ptr<float>();
    const float inf = std::numeric_limits<float>::infinity();
    at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
      gradInputRowsT(gmp + b * E, xp + b * E, e - b, E, a1v.data(), b1v.data(), -inf, inf, k1.k1.data(), k1.k2.data(), k1.k3.data(), dp + b * E);
    });
    auto out = gradientsFor<Args>();
    out[Args::kH1] = dh1;
    out[Args::kBn1Weight] = k1.dweight;
    out[Args::kBn1Bias] = k1.dbias;
    out[Args::kDw] = depthwiseGrad(acc, E, s.dw.options());
    out[Args::kBn2Weight] = k2.dweight;
    out[Args::kBn2Bias] = k2.dbias;
    return out;
  }
};

// Whether invertedMiddle takes h1 and a depthwise weight: float32 channels-last h1 [N, E, H, W]
// with E a multiple of 16 and N·H·W > 1, weight [E, 1, 3, 3].
inline bool invertedMiddleApplies(const at::Tensor& h1, const at::Tensor& dw) {
  return h1.dim() == 4 && h1.scalar_type() == at::kFloat && h1.device().is_cpu() && h1.is_contiguous(at::MemoryFormat::ChannelsLast) && h1.size(1) % 16 == 0 &&
         h1.size(0) * h1.size(2) * h1.size(3) > 1 && dw.dim() == 4 && dw.scalar_type() == at::kFloat && dw.size(0) == h1.size(1) && dw.size(1) == 1 &&
         dw.size(2) == 3 && dw.size(3) == 3;
}

// Every tensor of a fused op's batch norms has E values of x's dtype; else an error naming the op.
inline void checkNorms(const char* op, const at::Tensor& x, int64_t E, std::initializer_list<const NormTensors*> norms) {
  for (const auto* n : norms) {
    for (const auto* t : {&n->weight, &n->bias, &n->runningMean, &n->runningVar}) {
      if (!t->defined() || t->numel() != E) {
        std::ostringstream s;
        s << op << ": every batch-norm tensor must have " << E << " values, got " << (t->defined() ? t->sizes() : at::IntArrayRef{});
        throw std::invalid_argument(s.str());
      }
      checkPerChannel(*t, x, E, op);
    }
  }
}

// A batch norm's tensors as a fused op's forward reads them: weight and bias contiguous (a
// differentiable copy where they are views), the running statistics as they are (updated in place).
inline NormTensors withContiguousAffine(NormTensors n) {
  n.weight = n.weight.contiguous();
  n.bias = n.bias.contiguous();
  return n;
}

// relu6(bn2(depthwise3x3(relu6(bn1(h1))))) in training mode (batch statistics; running ones
// updated); every per-channel tensor has E float32 values.
inline at::Tensor invertedMiddle(const InvertedMiddleArgs& args) {
  const at::Tensor &h1 = args.h1, &dw = args.dw;
  if (!invertedMiddleApplies(h1, dw)) {
    std::ostringstream s;
    s << "invertedMiddle: needs float32 channels-last input [N, E, H, W] with E a multiple of 16 and weight [E, 1, 3, 3]; got input " << h1.sizes() << " "
      << h1.scalar_type() << (h1.is_contiguous(at::MemoryFormat::ChannelsLast) ? "" : " (not channels-last)") << ", weight " << dw.sizes() << " "
      << dw.scalar_type();
    throw std::invalid_argument(s.str());
  }
  checkNorms("invertedMiddle", h1, h1.size(1), {&args.bn1, &args.bn2});
  auto a = args;
  a.bn1 = withContiguousAffine(a.bn1);
  a.bn2 = withContiguousAffine(a.bn2);
  a.dw = a.dw.contiguous();
  return applyNamed<InvertedMiddle>(a);
}

}  // namespace compnet
