// `quantize`: a model folder or Hugging Face id in, an AutoAWQ-format 4-bit folder out (src/quantize/).
import { readFile } from 'node:fs/promises';
import { setLogLevel, type LogLevel } from '../common/log.js';
import { openDevices } from '../gpu/index.js';
import { resolveModel } from '../hub/hub.js';
import { quantizeModel, type QuantizeMethod } from '../quantize/quantize.js';

export interface QuantizeArgs {
  model: string;
  revision: string;
  out: string;
  method: QuantizeMethod;
  groupSize: number;
  calibData?: string;
  calibSamples: number;
  calibSeqlen: number;
  device?: number;
  logLevel?: LogLevel;
}

export async function runQuantize(args: QuantizeArgs): Promise<void> {
  if (args.logLevel) setLogLevel(args.logLevel);
  const modelDir = await resolveModel(args.model, { revision: args.revision, progress: true });
  const calibText = args.calibData === undefined ? undefined : await readCalibration(args.calibData);
  const gpu = args.method === 'awq' ? (await openDevices([args.device ?? 0]))[0] : undefined;
  const result = await quantizeModel({
    modelDir,
    outDir: args.out,
    method: args.method,
    groupSize: args.groupSize,
    calibText,
    calibSamples: args.calibSamples,
    calibSeqlen: args.calibSeqlen,
    gpu,
    progress: true,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (result.searches.length) {
    const gain =
      result.searches.reduce((s, g) => s + g.rtnLoss, 0) /
      Math.max(
        1e-30,
        result.searches.reduce((s, g) => s + g.loss, 0),
      );
    process.stderr.write(`[quantize] AWQ: summed linear-group output MSE on the calibration tokens ${gain.toFixed(2)}x lower than RTN's\n`);
  }
  if (result.clips.length) {
    const gain =
      result.clips.reduce((s, c) => s + c.rtnError, 0) /
      Math.max(
        1e-30,
        result.clips.reduce((s, c) => s + c.clippedError, 0),
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

async function readCalibration(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`--calib-data ${path}: ${(err as Error).message}`);
  }
}
