// What compnet's own CPU kernels (batch_norm_act.h, inverted_middle.h, gemm_rows.h) share.
//
// The binding builds at -O2, whose cheap vectoriser skips loops of runtime length: each kernel
// file wraps its loops in `#pragma GCC optimize("O3")` and compiles its float entry points once
// per ISA (AVX-512, AVX2, baseline x86-64), picked when the binding loads. `at::Vectorized` is not
// usable here: the binding's translation unit is not compiled per ISA the way ATen's kernels are.
#pragma once

#include <immintrin.h>

#include <cstdint>

#define COMPNET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define COMPNET_INLINE __attribute__((always_inline)) inline

namespace compnet {

// Copies n floats (a multiple of 16) with non-temporal stores, which skip the read that a normal
// store of a line not in cache makes first: for a 16 MiB output that is written now and read only
// by a later pass, that read is a third of the pass's memory traffic (BENCHMARKS.md, change 9).
// A dst that is not 64-byte aligned (never the case for libtorch's allocations and the callers'
// row offsets) gets normal stores. AVX-512 only: the callers check the CPU (invertedBranchApplies).
// Each thread that streams must call streamFence() before other threads read what it wrote.
__attribute__((target("avx512f"))) inline void streamCopy(const float* src, int64_t n, float* dst) {
  if (reinterpret_cast<uintptr_t>(dst) % 64 != 0) {
    for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    return;
  }
  for (int64_t i = 0; i < n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
}
inline void streamFence() { _mm_sfence(); }

}  // namespace compnet
