// What compnet's own CPU kernels (batch_norm_act.h, depthwise_conv.h) share.
//
// The binding builds at -O2, whose cheap vectoriser skips loops of runtime length: each kernel
// file wraps its loops in `#pragma GCC optimize("O3")` and compiles its float entry points once
// per ISA (AVX-512, AVX2, baseline x86-64), picked when the binding loads. `at::Vectorized` is not
// usable here: the binding's translation unit is not compiled per ISA the way ATen's kernels are.
#pragma once

#define COMPNET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define COMPNET_INLINE __attribute__((always_inline)) inline
