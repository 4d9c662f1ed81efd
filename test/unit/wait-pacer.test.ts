// WaitPacer, no GPU: the wait is requested only after most of the learned duration has been slept,
// an overestimate comes down quickly, and a disabled pacer requests at once. The "work" is a timer
// started before the wait, as GPU work starts at submit, before the readback is awaited.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tokenBucket, WaitPacer } from '../../src/gpu/wait-pacer.js';

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Starts `workMs` of "work", then waits for it through the pacer; returns when the wait was requested (ms after start). */
async function pacedWait(pacer: WaitPacer, kind: string, workMs: number, units = 1): Promise<number> {
  const start = performance.now();
  const work = delay(workMs);
  let requestedAt = -1;
  await pacer.wait(
    kind,
    () => {
      requestedAt = performance.now() - start;
      return work;
    },
    units,
  );
  return requestedAt;
}

test('a disabled pacer requests the wait at once and learns nothing', async () => {
  const pacer = new WaitPacer({ enabled: false });
  for (let i = 0; i < 2; i++) assert.ok((await pacedWait(pacer, 'k', 20)) < 5);
  assert.is(pacer.expectedMs('k'), undefined);
});

test('the first two waits of a kind are requested at once; later ones after napping most of the expected time', async () => {
  const pacer = new WaitPacer({ enabled: true, napFraction: 0.8 });
  assert.ok((await pacedWait(pacer, 'step:1', 40)) < 5);
  assert.is(pacer.expectedMs('step:1'), undefined, 'one wait is not enough to go by');
  assert.ok((await pacedWait(pacer, 'step:1', 40)) < 5);
  const learned = pacer.expectedMs('step:1')!;
  assert.ok(learned >= 38 && learned < 80, `learned ${learned} ms for 40 ms of work`);
  const requestedAt = await pacedWait(pacer, 'step:1', 40);
  assert.ok(requestedAt >= 0.8 * learned - 1, `requested after ${requestedAt} ms, learned ${learned}`);
  assert.ok(requestedAt < 40, 'the nap ends before the work does');
  // Kinds are learned separately.
  assert.ok((await pacedWait(pacer, 'step:16', 10)) < 5);
});

test('a one-off slow wait (a step that compiles its pipelines) never sets the nap', async () => {
  const pacer = new WaitPacer({ enabled: true, napFraction: 0.8 });
  await pacedWait(pacer, 'step:1', 300);
  assert.ok((await pacedWait(pacer, 'step:1', 20)) < 5, 'no nap after a single wait');
  const requestedAt = await pacedWait(pacer, 'step:1', 20);
  assert.ok(requestedAt < 20, `the third wait naps for the fast waits, not the slow one (requested after ${requestedAt} ms)`);
});

test('an overestimate is halved when the work finished during the nap', async () => {
  const pacer = new WaitPacer({ enabled: true, napFraction: 0.8 });
  await pacedWait(pacer, 'k', 100);
  await pacedWait(pacer, 'k', 100);
  const before = pacer.expectedMs('k')!;
  await pacedWait(pacer, 'k', 5); // sleeps ~80 ms for 5 ms of work
  const after = pacer.expectedMs('k')!;
  assert.ok(after < 0.6 * before, `estimate went from ${before} to ${after} ms`);
});

test('within a kind the expected time scales with the work units', async () => {
  const pacer = new WaitPacer({ enabled: true, napFraction: 0.8 });
  await pacedWait(pacer, 'step:512', 60, 600); // 0.1 ms per unit
  await pacedWait(pacer, 'step:512', 60, 600);
  const perUnit = pacer.expectedMs('step:512')!;
  assert.ok(pacer.expectedMs('step:512', 300)! === perUnit * 300);
  // Half the tokens: the nap is about half as long, so it ends before the (half as long) work.
  const requestedAt = await pacedWait(pacer, 'step:512', 30, 300);
  assert.ok(requestedAt >= 0.8 * perUnit * 300 - 1 && requestedAt < 30, `requested after ${requestedAt} ms`);
});

test('napFraction must be in [0, 1)', () => {
  assert.throws(() => new WaitPacer({ enabled: true, napFraction: 1 }), /napFraction/);
});

test('tokenBucket: exact up to 16 tokens, then powers of two', () => {
  assert.equal([1, 2, 15, 16, 17, 32, 33, 512, 513].map(tokenBucket), [1, 2, 15, 16, 32, 32, 64, 512, 1024]);
});

test.run();
