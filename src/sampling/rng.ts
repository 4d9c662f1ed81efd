// The counter-based random stream of sampling. A draw depends only on (seed, step), never on batch
// position or on how many draws came before, so a request replays exactly under any batching.
// shaders/sampling.wgsl implements the same arithmetic (u32 wrap-around) and must stay in sync:
// test/gpu/sampling.test.ts compares its draws with the reference sampler's.

/** lowbias32 (C. Wellons): a bijective u32 hash with strong avalanche. */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** A seed (any integer a JS number holds exactly) as the two u32 words the GPU sees. */
export function seedWords(seed: number): [lo: number, hi: number] {
  const s = Math.trunc(seed);
  return [s >>> 0, Math.floor(s / 4294967296) >>> 0];
}

/** The uniform of draw `step` of the stream `seed`: 24 random bits, u in [0, 1), exact in f32. */
export function uniformForStep(seed: number, step: number): number {
  const [lo, hi] = seedWords(seed);
  return uniformFromWords(lo, hi, step >>> 0);
}

export function uniformFromWords(seedLo: number, seedHi: number, step: number): number {
  let h = mix32((seedLo + 0x9e3779b9) >>> 0);
  h = mix32((h ^ seedHi) >>> 0);
  h = mix32((h ^ step) >>> 0);
  return (h >>> 8) / 16777216;
}
