// WaitPacer, no GPU and no wall clock: the pacer runs on a fake clock whose sleep advances it, so the
// tests check its decisions exactly (how long it naps before requesting a wait, what it learns)
// whatever the machine's load. The "work" stands for GPU work submitted just before the wait: it
// ends `workMs` after the wait began, and the request resolves then, or at once if it already has.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tokenBucket, WaitPacer } from '../../src/gpu/wait-pacer.js';

class FakeClock {
  t = 1000;
  /** Every nap the pacer asked for, in ms. */
  readonly naps: number[] = [];
  readonly now = (): number => this.t;
  readonly sleep = async (ms: number): Promise<void> => {
    this.naps.push(ms);
    this.t += ms;
  };
}

function pacerOn(clock: FakeClock, napFraction = 0.8): WaitPacer {
  return new WaitPacer({ enabled: true, napFraction, now: clock.now, sleep: clock.sleep });
}

/** Waits through `pacer` for `workMs` of work; returns when the wait was requested and the nap taken (ms). */
async function pacedWait(pacer: WaitPacer, clock: FakeClock, kind: string, workMs: number, units = 1): Promise<{ requestedAt: number; nap: number }> {
  const start = clock.t;
  const napsBefore = clock.naps.length;
  let requestedAt = -1;
  const value = await pacer.wait(
    kind,
    async () => {
      requestedAt = clock.t - start;
      clock.t = Math.max(clock.t, start + workMs);
      return 'result';
    },
    units,
  );
  assert.is(value, 'result', 'the request’s value is passed through');
  assert.ok(clock.naps.length - napsBefore <= 1, 'at most one nap per wait');
  return { requestedAt, nap: clock.naps.length > napsBefore ? clock.naps.at(-1)! : 0 };
}

test('a disabled pacer requests the wait at once, never sleeps and learns nothing', async () => {
  const clock = new FakeClock();
  const pacer = new WaitPacer({ enabled: false, now: clock.now, sleep: clock.sleep });
  for (let i = 0; i < 3; i++) assert.equal(await pacedWait(pacer, clock, 'k', 20), { requestedAt: 0, nap: 0 });
  assert.equal(clock.naps, []);
  assert.is(pacer.expectedMs('k'), undefined);
});

test('the first two waits of a kind are requested at once; later ones after napping napFraction of the expected time', async () => {
  const clock = new FakeClock();
  const pacer = pacerOn(clock, 0.8);
  assert.equal(await pacedWait(pacer, clock, 'step:1', 40), { requestedAt: 0, nap: 0 });
  assert.is(pacer.expectedMs('step:1'), undefined, 'one wait is not enough to go by');
  assert.equal(await pacedWait(pacer, clock, 'step:1', 40), { requestedAt: 0, nap: 0 });
  assert.is(pacer.expectedMs('step:1'), 40, 'learned the 40 ms the waits took');
  assert.equal(await pacedWait(pacer, clock, 'step:1', 40), { requestedAt: 32, nap: 32 }, '0.8 x 40 ms slept, the rest polled');
  assert.is(pacer.expectedMs('step:1'), 40, 'a paced wait is measured from its start, nap included');
  // Kinds are learned separately.
  assert.equal(await pacedWait(pacer, clock, 'step:16', 10), { requestedAt: 0, nap: 0 });
  assert.equal(await pacedWait(pacer, clock, 'step:1', 40, 1), { requestedAt: 32, nap: 32 });
});

test('a one-off slow wait (a step that compiles its pipelines) never sets the nap', async () => {
  const clock = new FakeClock();
  const pacer = pacerOn(clock);
  await pacedWait(pacer, clock, 'step:1', 300);
  assert.equal(await pacedWait(pacer, clock, 'step:1', 20), { requestedAt: 0, nap: 0 }, 'no nap after a single wait');
  assert.is(pacer.expectedMs('step:1'), 20, 'the fastest recent wait, not the slow one');
  assert.equal(await pacedWait(pacer, clock, 'step:1', 20), { requestedAt: 16, nap: 16 });
});

test('an overestimate is halved when the work finished during the nap', async () => {
  const clock = new FakeClock();
  const pacer = pacerOn(clock);
  await pacedWait(pacer, clock, 'k', 100);
  await pacedWait(pacer, clock, 'k', 100);
  assert.is(pacer.expectedMs('k'), 100);
  // 5 ms of work, 80 ms of nap: the map resolves at once, so the pacer records half the 80 ms.
  assert.equal(await pacedWait(pacer, clock, 'k', 5), { requestedAt: 80, nap: 80 });
  assert.is(pacer.expectedMs('k'), 40);
  assert.equal(await pacedWait(pacer, clock, 'k', 5), { requestedAt: 32, nap: 32 });
  assert.is(pacer.expectedMs('k'), 16, 'and halved again');
});

test('the estimate is the fastest of the last four waits of the kind', async () => {
  const clock = new FakeClock();
  const pacer = pacerOn(clock, 0.5);
  for (const ms of [10, 50, 60, 70]) await pacedWait(pacer, clock, 'k', ms);
  assert.is(pacer.expectedMs('k'), 10);
  await pacedWait(pacer, clock, 'k', 80); // naps 5 ms, takes 80: the 10 ms wait leaves the window
  assert.is(pacer.expectedMs('k'), 50);
});

test('naps under 2 ms are not taken (not worth a timer)', async () => {
  const clock = new FakeClock();
  const pacer = pacerOn(clock, 0.8);
  await pacedWait(pacer, clock, 'k', 2);
  await pacedWait(pacer, clock, 'k', 2);
  assert.is(pacer.expectedMs('k'), 2);
  assert.equal(await pacedWait(pacer, clock, 'k', 2), { requestedAt: 0, nap: 0 }, '1.6 ms would be the nap');
  assert.equal(clock.naps, []);
});

test('within a kind the expected time scales with the work units', async () => {
  const clock = new FakeClock();
  const pacer = pacerOn(clock, 0.8);
  await pacedWait(pacer, clock, 'step:512', 60, 600); // 0.1 ms per unit
  await pacedWait(pacer, clock, 'step:512', 60, 600);
  const perUnit = pacer.expectedMs('step:512')!;
  assert.is(perUnit, 0.1);
  assert.is(pacer.expectedMs('step:512', 300), perUnit * 300);
  // Half the tokens: the nap is half as long, and still ends before the (half as long) work.
  const { requestedAt, nap } = await pacedWait(pacer, clock, 'step:512', 30, 300);
  assert.ok(Math.abs(nap - 24) < 1e-9 && Math.abs(requestedAt - 24) < 1e-9, `napped ${nap} ms for 300 units`);
});

test('work must be positive and napFraction in [0, 1)', async () => {
  const clock = new FakeClock();
  assert.throws(() => new WaitPacer({ enabled: true, napFraction: 1 }), /napFraction/);
  assert.throws(() => new WaitPacer({ enabled: true, napFraction: -0.1 }), /napFraction/);
  try {
    await pacerOn(clock).wait('k', async () => 1, 0);
    assert.unreachable('work 0 is refused');
  } catch (err) {
    assert.match((err as Error).message, /work must be positive/);
  }
});

test('with the default clock and timer the request still runs and its value comes back', async () => {
  const pacer = new WaitPacer({ enabled: true });
  for (let i = 0; i < 3; i++) assert.is(await pacer.wait('k', async () => i), i);
  assert.ok(pacer.expectedMs('k')! >= 0);
});

test('tokenBucket: exact up to 16 tokens, then powers of two', () => {
  assert.equal([1, 2, 15, 16, 17, 32, 33, 512, 513].map(tokenBucket), [1, 2, 15, 16, 32, 32, 64, 512, 1024]);
});

test.run();
