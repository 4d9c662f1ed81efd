// `quantize`: a model folder or Hugging Face id in, an AutoAWQ-format 4-bit folder out (src/quantize/).
import { readFile } from 'node:fs/promises';
import { setLogLevel, type LogLevel } from '../common/log.js';
import { openDevices } from '../gpu/index.js';
import { resolveModel } from '../hub/hub.js';
import { QUANTIZE_DEFAULTS, quantizeModel, type QuantizeMethod } from '../quantize/quantize.js';

export interface QuantizeArgs {
  model: string;
  revision: string;
  out: string;
  method: QuantizeMethod;
  groupSize: number;
  calibData?: string;
  calibSamples?: number;
  calibSeqlen?: number;
  /** Unset unless given, so that --method rtn can refuse it; the quantizer defaults it to true. */
  duoScaling?: boolean;
  device?: number;
  logLevel?: LogLevel;
}

export async function runQuantize(args: QuantizeArgs): Promise<void> {
  if (args.logLevel) setLogLevel(args.logLevel);
  if (args.method === 'rtn') {
    // Round-to-nearest reads no activations: calibration flags would be accepted and ignored.
    const awqOnly = (['calibData', 'calibSamples', 'calibSeqlen', 'duoScaling', 'device'] as const).filter((k) => args[k] !== undefined);
    if (awqOnly.length) {
      // A boolean turned off was typed as --no-<flag>: name it the way the user wrote it.
      const flags = awqOnly.map((k) => `--${args[k] === false ? 'no-' : ''}${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
      throw new Error(`${flags.join(', ')} only apply to --method awq (rtn quantizes without calibration)`);
    }
  }
  const modelDir = await resolveModel(args.model, { revision: args.revision, progress: true });
  const calibText = args.calibData === undefined ? undefined : await readCalibration(args.calibData);
  const gpu = args.method === 'awq' ? (await openDevices([args.device ?? 0]))[0] : undefined;
  const result = await quantizeModel({
    modelDir,
    outDir: args.out,
    method: args.method,
    groupSize: args.groupSize,
    calibText,
    calibSamples: args.calibSamples ?? QUANTIZE_DEFAULTS.calibSamples,
    calibSeqlen: args.calibSeqlen ?? QUANTIZE_DEFAULTS.calibSeqlen,
    duoScaling: args.duoScaling ?? QUANTIZE_DEFAULTS.duoScaling,
    gpu,
    progress: true,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (result.searches.length) {
    const gain = sumRatio(
      result.searches,
      (g) => g.rtnLoss,
      (g) => g.loss,
    );
    const mode = (args.duoScaling ?? QUANTIZE_DEFAULTS.duoScaling) ? 'duo scaling' : 'x_mean scaling (no duo scaling)';
    const keptRtn = result.searches.filter((g) => g.ratio === null).length;
    process.stderr.write(
      `[quantize] AWQ: summed output MSE of the scored blocks (attention, MLP, o_proj, down_proj) on the calibration tokens ${gain.toFixed(2)}x lower than RTN's (${mode}; plain RTN scored best in ${keptRtn} of ${result.searches.length} groups)\n`,
    );
  }
  if (result.clips.length) {
    const gain = sumRatio(
      result.clips,
      (c) => c.rtnError,
      (c) => c.clippedError,
    );
    const clipped = result.clips.reduce((n, c) => n + c.clippedGroups, 0);
    const groups = result.clips.reduce((n, c) => n + c.groups, 0);
    process.stderr.write(
      `[quantize] AWQ clipping: ${clipped} of ${groups} groups clipped, their partial-output error ${gain.toFixed(2)}x lower than unclipped\n`,
    );
  }
  if (result.modulesToNotConvert.length)
    process.stderr.write(`[quantize] kept in f16 (modules_to_not_convert): ${result.modulesToNotConvert.length} linears\n`);
  process.stderr.write(`[quantize] wrote ${result.files.join(', ')} to ${result.outDir}\n`);
}

/** sum(before) / sum(after) over `items`: how many times smaller the error got (guarded against a zero sum). */
function sumRatio<T>(items: readonly T[], before: (item: T) => number, after: (item: T) => number): number {
  const sum = (f: (item: T) => number) => items.reduce((s, item) => s + f(item), 0);
  return sum(before) / Math.max(1e-30, sum(after));
}

async function readCalibration(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`--calib-data ${path}: ${(err as Error).message}`);
  }
}
