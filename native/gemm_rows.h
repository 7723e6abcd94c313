// Small register-blocked GEMMs over rows of channels-last activations, for the ops that fold
// batch norm's memory-bound passes into the 1x1 convolutions around them (inverted_branch.h).
//
// Why not oneDNN: its 1x1 convolution writes its output to memory and reads its input from
// memory; the batch-norm work next to it then needs a pass of its own over a 16 MiB tensor. These
// kernels work on a chunk of rows that stays in the L2 cache, so the caller can run the batch-norm
// work on the same chunk right before or after (bench/probes/fused_gemm.cc: on the reference
// shapes they match oneDNN's speed, 5.91 vs 5.88 ms at one thread).
//
// Tiles: R rows by 16·NV columns of the output stay in registers (6 x 64: 24 of AVX-512's 32
// vector registers) while K is swept; each loaded B vector feeds R FMAs.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernel_support.h"

namespace compnet {

#pragma GCC push_options
// -std=c++17 turns off GCC's contraction of a·b + c into FMA; these loops want it.
#pragma GCC optimize("O3", "fp-contract=fast")

typedef float G16 __attribute__((vector_size(64)));

COMPNET_INLINE G16 gload(const float* p) {
  G16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
COMPNET_INLINE void gstore(float* p, G16 v) { std::memcpy(p, &v, sizeof v); }

// An R x 16·NV tile of accumulators in registers, loaded from / stored to a row-major matrix.
template <int R, int NV>
COMPNET_INLINE void loadTile(G16 (&acc)[R][NV], const float* M, int64_t ld) {
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = M ? gload(M + i * ld + 16 * j) : G16{};
}
template <int R, int NV>
COMPNET_INLINE void storeTile(const G16 (&acc)[R][NV], float* M, int64_t ld) {
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) gstore(M + i * ld + 16 * j, acc[i][j]);
}

// acc[i][j] += Σ_k A[i·ai + k·ak]·B[k·ldb + j] over k < K: each loaded B vector feeds R FMAs. A's
// element (i, k) sits at i·ai + k·ak, so one kernel serves A·B (ai = lda, ak = 1) and Xᵀ·Y (ai = 1,
// ak = ldx).
template <int R, int NV>
COMPNET_INLINE void rankUpdates(G16 (&acc)[R][NV], const float* A, int64_t ai, int64_t ak, const float* B, int64_t ldb, int64_t K) {
  for (int64_t k = 0; k < K; ++k) {
    G16 b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) b[j] = gload(B + k * ldb + 16 * j);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const G16 a = G16{} + A[i * ai + k * ak];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] += a * b[j];
    }
  }
}

// C[i, j] = Z[i, j] + Σ_k A[i, k]·B[k, j] for i < R, j < 16·NV (Z: `addend`, laid out as C, or
// zero if null); with `sum` non-null, also sum[j] += Σ_i C[i, j] and sq[j] += Σ_i C[i, j]² (batch
// norm's moments, summed from registers).
template <int R, int NV>
COMPNET_INLINE void nnTile(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K, float* C, int64_t ldc, const float* addend, float* sum,
                           float* sq) {
  G16 acc[R][NV];
  loadTile(acc, addend, ldc);
  rankUpdates(acc, A, lda, 1, B, ldb, K);
  storeTile(acc, C, ldc);
  if (!sum) return;
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    G16 s = gload(sum + 16 * j), q = gload(sq + 16 * j);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      s += acc[i][j];
      q += acc[i][j] * acc[i][j];
    }
    gstore(sum + 16 * j, s);
    gstore(sq + 16 * j, q);
  }
}

// D[i, j] += Σ_r X[r, i]·Y[r, j] for i < R, j < 16·NV, r < rows.
template <int R, int NV>
COMPNET_INLINE void tnTile(const float* X, int64_t ldx, const float* Y, int64_t ldy, int64_t rows, float* D, int64_t ldd) {
  G16 acc[R][NV];
  loadTile(acc, D, ldd);
  rankUpdates(acc, X, 1, ldx, Y, ldy, rows);
  storeTile(acc, D, ldd);
}

constexpr int kTileRows = 6;

// One row of tiles at row i0: 64-wide column tiles, then 16-wide ones (cols a multiple of 16).
// (Helpers are always_inline, not lambdas: only inlined code is compiled for each ISA clone.)
template <template <int, int> class Tile, int R, typename... Args>
COMPNET_INLINE void tileRow(int64_t i0, int64_t cols, Args... args) {
  int64_t j0 = 0;
  for (; j0 + 64 <= cols; j0 += 64) Tile<R, 4>::run(i0, j0, args...);
  for (; j0 < cols; j0 += 16) Tile<R, 1>::run(i0, j0, args...);
}

// Runs Tile<R, NV>::run(i0, j0, args...) over a rows x cols output: kTileRows-row tiles, then one
// of the remaining rows.
template <template <int, int> class Tile, typename... Args>
COMPNET_INLINE void forTiles(int64_t rows, int64_t cols, Args... args) {
  int64_t i0 = 0;
  for (; i0 + kTileRows <= rows; i0 += kTileRows) tileRow<Tile, kTileRows>(i0, cols, args...);
  switch (rows - i0) {
    case 5: tileRow<Tile, 5>(i0, cols, args...); break;
    case 4: tileRow<Tile, 4>(i0, cols, args...); break;
    case 3: tileRow<Tile, 3>(i0, cols, args...); break;
    case 2: tileRow<Tile, 2>(i0, cols, args...); break;
    case 1: tileRow<Tile, 1>(i0, cols, args...); break;
    default: break;
  }
}

template <int R, int NV>
struct NnAt {
  COMPNET_INLINE static void run(int64_t i0, int64_t j0, const float* A, int64_t K, const float* B, int64_t N, float* C, const float* Z, float* sum,
                                 float* sq) {
    nnTile<R, NV>(A + i0 * K, K, B + j0, N, K, C + i0 * N + j0, N, Z ? Z + i0 * N + j0 : nullptr, sum ? sum + j0 : nullptr, sq ? sq + j0 : nullptr);
  }
};
template <int R, int NV>
struct TnAt {
  COMPNET_INLINE static void run(int64_t i0, int64_t j0, const float* X, int64_t P, const float* Y, int64_t Q, int64_t rows, float* D) {
    tnTile<R, NV>(X + i0, P, Y + j0, Q, rows, D + i0 * Q + j0, Q);
  }
};

// C[rows, N] = Z + A[rows, K]·B[K, N], all row-major and dense (Z: `addend`, [rows, N], or zero if
// null); N a multiple of 16. With `sum` and `sq` (N floats each) non-null, C's column sums and
// sums of squares are added to them.
COMPNET_CLONES void gemmRowsF(const float* A, int64_t rows, int64_t K, const float* B, int64_t N, float* C, const float* addend = nullptr, float* sum = nullptr,
                              float* sq = nullptr) {
  forTiles<NnAt>(rows, N, A, K, B, N, C, addend, sum, sq);
}

// D[P, Q] += X[rows, P]ᵀ·Y[rows, Q], all row-major and dense; Q a multiple of 16. (A weight
// gradient summed over a chunk of rows.)
COMPNET_CLONES void gemmTnAccF(const float* X, int64_t P, const float* Y, int64_t Q, int64_t rows, float* D) {
  forTiles<TnAt>(P, Q, X, P, Y, Q, rows, D);
}

#pragma GCC pop_options

}  // namespace compnet
