/**
 * Turning decoded 8-bit images into the network's input: a float32 NHWC
 * tensor of fixed size and channel count, values in [0, 1], optionally
 * standardised per channel. Kept separate from decoding so IDX batches and
 * image folders go through exactly the same code.
 */
import type { ImageBatch, RawImage } from './images.js';

/** How to bring an image to `size`×`size`. */
export type FitMode = 'resize' | 'pad';

/** Options for `toTensorData`. */
export interface PreprocessOptions {
  /** Output height and width. */
  size: number;
  /** Output channels: grey images are replicated to RGB, RGB is reduced to luminance. */
  channels: 1 | 3;
  /**
   * 'resize': stretch to size×size (aspect ratio not kept).
   * 'pad': place the image centred on a black (0) size×size canvas; an image
   * larger than `size` in either dimension is first shrunk, keeping its aspect
   * ratio, so its longer side equals `size`.
   */
  fit: FitMode;
  /**
   * When shrinking, widen the bilinear filter to cover the source footprint
   * (as PIL and torchvision's antialias=True do) so thin strokes are not lost
   * by sampling. Default true. Enlarging is plain bilinear either way.
   */
  antialias?: boolean;
}

/** Per-channel mean and standard deviation, used to standardise inputs with train-split statistics. */
export interface ChannelStats {
  mean: number[];
  std: number[];
}

/** Resampling taps for one axis: output i reads src[idx[k]]·w[k] for k in [off[i], off[i+1]). */
interface AxisTaps {
  off: Int32Array;
  idx: Int32Array;
  w: Float64Array;
}

/**
 * Triangle-filter taps mapping `inSize` pixels to `outSize` with
 * align_corners=false geometry (pixel centres at i+0.5). With support 1 this is
 * exactly bilinear (edge pixels clamped); when shrinking with antialias the
 * triangle is widened by the scale factor.
 */
function axisTaps(inSize: number, outSize: number, antialias: boolean): AxisTaps {
  const scale = inSize / outSize;
  const support = antialias && scale > 1 ? scale : 1;
  const off = new Int32Array(outSize + 1);
  const idx: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(inSize, Math.ceil(center + support));
    const first = w.length;
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const t = 1 - Math.abs((j + 0.5 - center) / support);
      if (t > 0) {
        idx.push(j);
        w.push(t);
        total += t;
      }
    }
    if (total === 0) {
      // Cannot happen for sane sizes, but never divide by zero: fall back to nearest.
      idx.push(Math.min(inSize - 1, Math.floor(center)));
      w.push(1);
      total = 1;
    }
    for (let k = first; k < w.length; k++) w[k] /= total;
    off[i + 1] = w.length;
  }
  return { off, idx: Int32Array.from(idx), w: Float64Array.from(w) };
}

/** Separable resample of an HWC 8-bit image to oh×ow (same channels), in float64; values stay in 0..255 up to rounding. */
function resample(src: Uint8Array, h: number, w: number, c: number, oh: number, ow: number, taps: (i: number, o: number) => AxisTaps): Float64Array {
  if (oh === h && ow === w) return Float64Array.from(src);
  const tx = taps(w, ow);
  const ty = taps(h, oh);
  const mid = new Float64Array(h * ow * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      for (let ch = 0; ch < c; ch++) {
        let s = 0;
        for (let k = tx.off[x]; k < tx.off[x + 1]; k++) s += src[(y * w + tx.idx[k]) * c + ch] * tx.w[k];
        mid[(y * ow + x) * c + ch] = s;
      }
    }
  }
  const out = new Float64Array(oh * ow * c);
  for (let y = 0; y < oh; y++) {
    for (let k = ty.off[y]; k < ty.off[y + 1]; k++) {
      const row = ty.idx[k] * ow * c;
      const wk = ty.w[k];
      const base = y * ow * c;
      for (let j = 0; j < ow * c; j++) out[base + j] += mid[row + j] * wk;
    }
  }
  return out;
}

/** View image i of either input representation as {h, w, c, data}. */
function imageAt(images: RawImage[] | ImageBatch, i: number): { h: number; w: number; c: number; data: Uint8Array } {
  if (Array.isArray(images)) {
    const im = images[i];
    return { h: im.height, w: im.width, c: im.channels, data: im.data };
  }
  const stride = images.height * images.width * images.channels;
  return { h: images.height, w: images.width, c: images.channels, data: images.data.subarray(i * stride, (i + 1) * stride) };
}

/** 0..255 → [0, 1], clamped so float rounding in the filters can never leave the range. */
function unit(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 1 : v / 255;
}

/** ITU-R BT.601 luma weights (what PIL's convert('L') uses). */
const LUMA = [0.299, 0.587, 0.114];

/**
 * Convert images to a float32 `[n, size, size, channels]` (NHWC) array in [0, 1].
 * See `PreprocessOptions` for the resize / pad behaviour.
 */
export function toTensorData(images: RawImage[] | ImageBatch, opts: PreprocessOptions): Float32Array {
  const { size, channels: outC, fit } = opts;
  if (!Number.isInteger(size) || size <= 0) throw new Error(`toTensorData: size must be a positive integer, got ${size}`);
  if (outC !== 1 && outC !== 3) throw new Error(`toTensorData: channels must be 1 or 3, got ${outC}`);
  if (fit !== 'resize' && fit !== 'pad') throw new Error(`toTensorData: fit must be "resize" or "pad", got ${JSON.stringify(fit)}`);
  const antialias = opts.antialias ?? true;
  const cache = new Map<string, AxisTaps>();
  const taps = (i: number, o: number): AxisTaps => {
    const key = `${i}:${o}`;
    let t = cache.get(key);
    if (!t) cache.set(key, (t = axisTaps(i, o, antialias)));
    return t;
  };
  const n = Array.isArray(images) ? images.length : images.n;
  const plane = size * size * outC;
  const out = new Float32Array(n * plane);
  for (let i = 0; i < n; i++) {
    const { h, w, c, data } = imageAt(images, i);
    if (c !== 1 && c !== 3) throw new Error(`toTensorData: image ${i} has ${c} channels (expected 1 or 3)`);
    if (data.length !== h * w * c) throw new Error(`toTensorData: image ${i} has ${data.length} bytes, expected ${h}×${w}×${c}`);
    let oh = size, ow = size;
    if (fit === 'pad') {
      const shrink = Math.min(1, size / Math.max(h, w));
      oh = Math.max(1, Math.min(size, Math.round(h * shrink)));
      ow = Math.max(1, Math.min(size, Math.round(w * shrink)));
    }
    const top = (size - oh) >> 1;
    const left = (size - ow) >> 1;
    const px = resample(data, h, w, c, oh, ow, taps);
    const base = i * plane;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const s = (y * ow + x) * c;
        const d = base + ((y + top) * size + (x + left)) * outC;
        if (c === outC) {
          for (let ch = 0; ch < c; ch++) out[d + ch] = unit(px[s + ch]);
        } else if (c === 1) {
          const v = unit(px[s]);
          out[d] = v;
          out[d + 1] = v;
          out[d + 2] = v;
        } else {
          out[d] = unit(LUMA[0] * px[s] + LUMA[1] * px[s + 1] + LUMA[2] * px[s + 2]);
        }
      }
    }
  }
  return out;
}

/** Per-channel mean and (population) standard deviation of NHWC data, accumulated in float64. */
export function channelStats(data: Float32Array, channels: number): ChannelStats {
  if (data.length % channels !== 0) throw new Error(`channelStats: ${data.length} values is not a multiple of ${channels} channels`);
  const count = data.length / channels;
  const sum = new Float64Array(channels);
  const sq = new Float64Array(channels);
  for (let i = 0; i < data.length; i += channels) {
    for (let c = 0; c < channels; c++) sum[c] += data[i + c];
  }
  const mean = Array.from(sum, (s) => (count > 0 ? s / count : 0));
  for (let i = 0; i < data.length; i += channels) {
    for (let c = 0; c < channels; c++) {
      const d = data[i + c] - mean[c];
      sq[c] += d * d;
    }
  }
  const std = Array.from(sq, (s) => (count > 0 ? Math.sqrt(s / count) : 0));
  return { mean, std };
}

/**
 * Standardise NHWC data in place: x ← (x − mean[c]) / std[c]. A zero std (a
 * constant channel) divides by 1 instead, so nothing becomes NaN/Infinity.
 */
export function normalize(data: Float32Array, channels: number, stats: ChannelStats): Float32Array {
  if (stats.mean.length !== channels || stats.std.length !== channels) {
    throw new Error(`normalize: stats have ${stats.mean.length} channels, data has ${channels}`);
  }
  const inv = stats.std.map((s) => (s > 0 ? 1 / s : 1));
  for (let i = 0; i < data.length; i += channels) {
    for (let c = 0; c < channels; c++) data[i + c] = (data[i + c] - stats.mean[c]) * inv[c];
  }
  return data;
}
