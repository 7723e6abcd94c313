/**
 * compnet's public API: compositional networks over libtorch.
 *
 * Layers, each depending only on those before it: tensors (`torch`) → model → data and saved
 * models (`io`) → training modes (`train`) → reports. The CLI (`src/cli`) uses only these.
 * `experiments/` and `bench/` import nothing but this file, so everything they need is here;
 * test/architecture.test.ts enforces both rules.
 */
export * as torch from './torch/index.js';
export { CompNet, type Head, type TaskState, type AddTaskOptions } from './model/network.js';
export { Order, type OrderJSON } from './model/order.js';
export { Pool } from './model/pool.js';
export { FUSION_SETTINGS, fusionSetting } from './model/fusion.js';
export { Patch, NormSite } from './model/patch.js';
export { parameterCounts, flopsPerImage } from './model/cost.js';
export type * from './model/types.js';
export { saveModel, loadModel, readManifest, poolHash, type Manifest, type SaveInfo } from './io/savedModel.js';
export { loadSafetensors, saveSafetensors } from './io/safetensors.js';
export { saveTensors, loadTensors } from './io/tensorFile.js';
export { ensureDir, writeFileAtomic } from './io/atomic.js';
export { parseConfig, loadConfigFile, trainDefaults, DEFAULT_MODEL, DEFAULT_TRAIN, METHOD_TRAIN_DEFAULTS, type Config } from './data/config.js';
export { loadTaskData, loadConfigData, type TaskData } from './data/load.js';
export { readIdx, readIdxPair, writeIdx } from './data/idx.js';
export { readImageFolder, readImageFile, pickImages, type RawImage, type ImageBatch } from './data/images.js';
export { loadBuiltin } from './data/builtin.js';
export { selectClasses, splitDataset, takePerClass, subset, batches, type Dataset, type Batch } from './data/dataset.js';
export { Rng } from './data/rng.js';
export { trainMultitask, multitaskGroups, type MultitaskSettings, type MultitaskResult } from './train/multitask.js';
export { trainFromConfig } from './train/fromConfig.js';
export { runLoop, type LoopSettings, type TaskSplits, type EpochRecord } from './train/loop.js';
export { trainStep } from './train/step.js';
export { evaluate, recalibrate, taskMetrics, type TaskMetrics } from './train/evaluate.js';
export { transferTask, parseTrainParts, type TrainPart, type TransferOptions, type TransferResult, type TransferInit, type OrderLearning } from './train/transfer.js';
export { adaptTarget, objectiveValue, objectiveLoss, type AdaptOptions, type AdaptResult, type AdaptObjective } from './train/adapt.js';
export { jointAdapt, type JointAdaptOptions, type JointAdaptResult, type Alignment } from './train/jointAdapt.js';
export { consoleReporter, silentReporter, type Reporter } from './train/progress.js';
export { summary, parameterTable, flopTable } from './report/summary.js';
export { accuracyTable } from './report/accuracy.js';
export { table, type Cell, type Align } from './report/table.js';
// The two below live in src/cli today (the inspection report is to move to src/report); the
// barrel sits above every layer, so it may re-export them, and their users need not know where.
/** The configuration `compnet demo` trains (three built-in tasks over one pool), for scripts that reproduce the demo. */
export { demoConfig } from './cli/demoConfig.js';
/** Load a saved model's orders and history, and write the inspection report (text, SVG/PNG pictures, HTML) that `compnet inspect` writes. */
export { inspectModel, writeInspectReport, type ModelInspection } from './report/inspectReport.js';
export { LIBRARY_VERSION } from './version.js';
