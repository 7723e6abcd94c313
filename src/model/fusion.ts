/**
 * The fusion policy: which parts of a training-mode pass run as compnet's fused native ops instead
 * of ATen's separate ones. The fused ops compute the same function up to float rounding, in fewer
 * passes over memory (BENCHMARKS.md, "Changes applied", items 5 to 8). It is speed code only: the
 * method, conv → BN → act per slot and the residual, is `block.ts`, which asks this file, at each
 * place where a fused op could run, whether one does.
 */
import { Tensor, batchNormClamp, invertedMiddle, invertedMiddleApplies, invertedBranch, invertedBranchApplies, type BatchNormParams } from '../torch/index.js';
import type { Activation } from './types.js';
import type { ConvSlot } from './slots.js';

/**
 * The settings, each fusing everything the one before it fuses, and more:
 * - `off`: nothing (ATen's batch norm, in-place ReLU6);
 * - `bn-relu6`: each batch norm followed by ReLU6, with it (`batchNormClamp`);
 * - `bn`: also the batch norms without an activation;
 * - `middle`: also the middle of an inverted-residual block (batch norm, ReLU6, 3x3 depthwise
 *   conv, batch norm, ReLU6) as one op (`invertedMiddle`) where it applies (float32, expanded
 *   width a multiple of 16);
 * - `whole-block`: also each whole inverted-residual block (1x1 conv, the middle, 1x1 conv, batch
 *   norm and the residual add) as one op on compnet's own GEMMs (`invertedBranch`) where it
 *   applies (also: every width a multiple of 16, a CPU with AVX-512); elsewhere as `middle`.
 * Hardswish never fuses.
 */
export const FUSION_SETTINGS = ['off', 'bn-relu6', 'bn', 'middle', 'whole-block'] as const;
export type FusionSetting = (typeof FUSION_SETTINGS)[number];

/**
 * The names the settings had before they were named for what they do; scripts and bench flags may
 * still use them. `block` was `middle` (the whole block came later, as `branch`), so it keeps that
 * meaning.
 */
const LEGACY = { relu6: 'bn-relu6', all: 'bn', block: 'middle', branch: 'whole-block' } as const satisfies Record<string, FusionSetting>;
export type LegacyFusionSetting = keyof typeof LEGACY;

/**
 * The setting a name stands for: a current name, or an old one (the one place they are mapped).
 * An unknown name is an error naming `what` (the property or flag it came from) and every name.
 */
export function fusionSetting(name: string, what = 'fusedBatchNorm'): FusionSetting {
  if ((FUSION_SETTINGS as readonly string[]).includes(name)) return name as FusionSetting;
  if (Object.hasOwn(LEGACY, name)) return LEGACY[name as LegacyFusionSetting];
  const old = Object.entries(LEGACY).map(([k, v]) => `${k} = ${v}`);
  throw new Error(`${what}: unknown fusion setting ${JSON.stringify(name)} (expected ${FUSION_SETTINGS.join(', ')}; old names: ${old.join(', ')})`);
}

/**
 * Smallest input (elements) a fused op takes: 2^18 float32 values = 1 MiB, Zen 4's L2 per core.
 * The fusion saves passes over memory; a smaller tensor stays in cache between ATen's passes, so
 * fusing it gains nothing and would only change the float rounding of small models.
 */
export const FUSED_MIN_ELEMENTS = 1 << 18;

/** The policy of one pass: the setting and the size below which nothing fuses. */
export interface FusionOptions {
  /** Default `off`. */
  fused?: FusionSetting;
  /** Inputs with fewer elements run unfused (default `FUSED_MIN_ELEMENTS`). */
  fusedMinElements?: number;
}

/** What the fused ops need of the pass besides the policy: fused ops exist for training mode only. */
type Pass = FusionOptions & { training: boolean; momentum?: number };

/** How far a setting fuses: its place in `FUSION_SETTINGS`. */
const level = (f: FusionSetting | undefined): number => FUSION_SETTINGS.indexOf(f ?? 'off');
const BN_RELU6 = level('bn-relu6');
const BN = level('bn');
const MIDDLE = level('middle');
const WHOLE_BLOCK = level('whole-block');

/**
 * Batch norm with parameters `p` on the fresh conv output `h`, then the activation `act` if any,
 * as one fused op (`batchNormClamp`: one pass fewer forward, two fewer backward) when the setting
 * fuses this batch norm and `h` is fusable; else `undefined`, and the caller runs the plain ops.
 */
export function fusedNormAct(p: BatchNormParams, h: Tensor, o: Pass, act: Activation | null): Tensor | undefined {
  const fuse = o.training && (act === 'relu6' ? level(o.fused) >= BN_RELU6 : act === null && level(o.fused) >= BN);
  if (!fuse || !fusable(h, o)) return undefined;
  const bounds = act ? { min: 0, max: 6 } : { min: -Infinity, max: Infinity };
  return batchNormClamp(h, { ...p, momentum: o.momentum ?? 0.1, ...bounds });
}

/**
 * The whole block on `x` (`x + f(x)` with `residual`, else `f(x)`) as one op (`invertedBranch`:
 * both 1x1 convs, the middle, the last batch norm and the residual connection) when the setting is
 * `whole-block` and the block is an inverted-residual one that the op takes; else `undefined`.
 */
export function fusedBlock(x: Tensor, slots: ConvSlot[], weights: Tensor[], norms: BatchNormParams[], o: Pass, act: Activation, residual: boolean): Tensor | undefined {
  if (level(o.fused) < WHOLE_BLOCK || slots.length !== 3 || !middleAt(0, slots, o, act) || !is1x1(slots[0]!) || !is1x1(slots[2]!) || slots[2]!.activate || !fusable(x, o)) return undefined;
  const [w1, dw, w3] = weights;
  if (!invertedBranchApplies(x, w1!, dw!, w3!, residual)) return undefined;
  return invertedBranch(x, w1!, norms[0]!, dw!, norms[1]!, w3!, norms[2]!, { residual, momentum: o.momentum ?? 0.1 });
}

/**
 * Given conv `i`'s output `h`, batch norm `i`, ReLU6, the depthwise conv `i + 1`, batch norm
 * `i + 1` and ReLU6 as one op (`invertedMiddle`) when the setting fuses middles and the op takes
 * them; else `undefined`. A result stands for slots `i` and `i + 1` both.
 */
export function fusedMiddle(h: Tensor, i: number, slots: ConvSlot[], weights: Tensor[], norms: BatchNormParams[], o: Pass, act: Activation): Tensor | undefined {
  if (level(o.fused) < MIDDLE || !middleAt(i, slots, o, act) || !fusable(h, o) || !invertedMiddleApplies(h, weights[i + 1]!)) return undefined;
  return invertedMiddle(h, norms[i]!, weights[i + 1]!, norms[i + 1]!, o.momentum ?? 0.1);
}

/** Large enough and channels-last: what every fused op needs of its input. */
function fusable(h: Tensor, o: FusionOptions): boolean {
  return h.numel >= (o.fusedMinElements ?? FUSED_MIN_ELEMENTS) && h.isChannelsLast;
}

/** Whether slot `i`'s batch norm starts an inverted block's middle in a training pass: ReLU6 after it, then a depthwise 3x3 slot. */
function middleAt(i: number, slots: ConvSlot[], o: Pass, act: Activation): boolean {
  return o.training && act === 'relu6' && slots[i]!.activate && !!slots[i + 1] && isDepthwise3x3(slots[i + 1]!);
}

/** A plain 1x1 convolution. */
function is1x1(s: ConvSlot): boolean {
  return s.groups === 1 && s.shape[2] === 1 && s.shape[3] === 1 && s.padding === 0;
}

/** A depthwise 3x3 "same" convolution followed by batch norm and the activation. */
function isDepthwise3x3(s: ConvSlot): boolean {
  return s.activate && s.groups === s.bnWidth && s.shape[0] === s.bnWidth && s.shape[1] === 1 && s.shape[2] === 3 && s.shape[3] === 3 && s.padding === 1;
}
