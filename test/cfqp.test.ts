// CFQP (ALGORITHMS §4, ../papers/cfqp.txt) by hand cases: Method 1's four conditions on synthetic
// inputs and outputs, each case deciding by one threshold at its boundary; the 3×3 box blur and the
// HR → LR outlier points; Method 2 on a sharpening "network" whose output overshoots at edges,
// where each blur lowers the outlier count, the iteration cap holds, and the least-intrusive result
// wins a tie; and cfqp end to end (the chosen RI calibrates the INT8 model).
import { describe, expect, it } from 'vitest';
import {
  ActivationQuantizer, type BlurMethod, CFQP_THRESHOLDS, type Image, Module, type Planes, type RiRepair, type Tensor, Upscaler, ValueError,
  Conv2d, boxBlur3, cfqp, cfqpSelect, cfqpThresholds, concat, createImage, grayToRgb, measureRi, outlierPoints, pixelShuffle, repairRi,
  noGrad, representativeImage, respondTo, tensor,
} from '../src/index.js';

/** One-channel planes from rows of values. */
function plane(rows: number[][]): Planes {
  return { channels: 1, height: rows.length, width: rows[0].length, data: rows.flat() };
}

/** Nearest-neighbour ×2 of a one-channel plane (a perfect "network": same range, same mean). */
function nearest2(p: Planes): Planes {
  const width = p.width * 2;
  const data: number[] = [];
  for (let c = 0; c < p.channels; c++) {
    for (let y = 0; y < p.height * 2; y++) {
      for (let x = 0; x < width; x++) data.push(Number(p.data[c * p.width * p.height + Math.floor(y / 2) * p.width + Math.floor(x / 2)]));
    }
  }
  return { channels: p.channels, height: p.height * 2, width, data };
}

/** `p` with `f` applied to each value (index in the flat data). */
const mapped = (p: Planes, f: (v: number, i: number) => number): Planes => ({ ...p, data: Array.from(p.data, (v, i) => f(Number(v), i)) });

/** An 8×8 RI: pixel 0 is 0, pixel 1 is 255, the rest 100 (so min/max rest on two pixels and the means on the rest). */
const RI = plane(Array.from({ length: 8 }, (_, y) => Array.from({ length: 8 }, (_, x) => (y === 0 && x === 0 ? 0 : y === 0 && x === 1 ? 255 : 100))));

describe('Method 1: each threshold decides at its boundary', () => {
  it('a faithful output is good, with every measure 0', () => {
    const m = measureRi(RI, nearest2(RI), 255);
    expect(m).toEqual({ outliers: 0, outputMin: 0, outputMax: 255, inputMin: 0, inputMax: 255, rangeGap: 0, deviation: 0, shift: 0, failed: [], good: true });
  });

  it('(a) outliers: 25 values above 255 pass, 26 fail (and nothing else does); below 0 counts too', () => {
    // Move the first n of the 100-valued HR pixels to `to`: min/max move by 0.5 or 0.001; (d) is lifted out of the way.
    const moved = (n: number, to: number) => {
      let left = n;
      return mapped(nearest2(RI), (v) => (v === 100 && left-- > 0 ? to : v));
    };
    const lenient = { thresholds: { shift: 100 } };
    const ok = measureRi(RI, moved(25, 255.5), 255, lenient);
    expect([ok.outliers, ok.good, ok.rangeGap, ok.deviation]).toEqual([25, true, 0.5, 0.5]);
    const bad = measureRi(RI, moved(26, 255.5), 255, lenient);
    expect([bad.outliers, bad.failed]).toEqual([26, ['outliers']]);
    const low = measureRi(RI, moved(26, -0.001), 255, lenient);
    expect([low.outliers, low.failed]).toEqual([26, ['outliers']]);
    expect(measureRi(RI, moved(26, 255.5), 255, { thresholds: { outliers: 26, shift: 100 } }).good).toBe(true);
  });

  it('(b) range: output max 250 passes, 249 fails, when the RI itself stops there', () => {
    const capped = (top: number) => mapped(RI, (v) => (v === 255 ? top : v));
    const ok = measureRi(capped(250), nearest2(capped(250)), 255);
    expect([ok.rangeGap, ok.deviation, ok.good]).toEqual([5, 0, true]);
    const bad = measureRi(capped(249), nearest2(capped(249)), 255);
    expect([bad.rangeGap, bad.deviation, bad.failed]).toEqual([6, 0, ['range']]);
    // Too wide fails as well: an output min of −6 (one outlier).
    const wide = measureRi(RI, mapped(nearest2(RI), (v) => (v === 0 ? -6 : v)), 255, { thresholds: { deviation: 6 } });
    expect([wide.rangeGap, wide.outliers, wide.failed]).toEqual([6, 4, ['range']]);
  });

  it('(c) deviation: an output min 5 below the RI\'s passes, 6 below fails', () => {
    // The RI's min is 9 or 10; the output's is 4, so (b) holds (4 ≤ 5) and only (c) moves.
    const lifted = (low: number) => mapped(RI, (v) => (v === 0 ? low : v));
    const out = mapped(nearest2(lifted(9)), (v) => (v === 9 ? 4 : v));
    const ok = measureRi(lifted(9), out, 255);
    expect([ok.rangeGap, ok.deviation, ok.good]).toEqual([4, 5, true]);
    const bad = measureRi(lifted(10), out, 255);
    expect([bad.rangeGap, bad.deviation, bad.failed]).toEqual([4, 6, ['deviation']]);
  });

  it('(d) shift: the mean moved by 9.69 passes, by 10.66 fails; min and max untouched', () => {
    // 62 of 64 pixels are 100: +d on them moves the mean by d·62/64.
    const moved = (d: number) => mapped(nearest2(RI), (v) => (v === 100 ? 100 + d : v));
    const ok = measureRi(RI, moved(10), 255);
    expect([ok.shift, ok.good]).toEqual([(10 * 62) / 64, true]);
    expect(measureRi(RI, moved(11), 255, { thresholds: { shift: 10.7 } }).good).toBe(true);
    const bad = measureRi(RI, moved(11), 255);
    expect(bad.shift).toBe((11 * 62) / 64);
    expect([bad.rangeGap, bad.deviation, bad.failed]).toEqual([0, 0, ['shift']]);
  });

  it('(d) shift is per channel: +12 in one channel and −12 in another fail though the overall mean is still', () => {
    const rgb: Planes = { channels: 3, height: 8, width: 8, data: [...RI.data, ...RI.data, ...RI.data] };
    const n = 16 * 16;
    const out = mapped(nearest2(rgb), (v, i) => (v !== 100 ? v : i < n ? 100 + 12 : i >= 2 * n ? 100 - 12 : 100));
    const m = measureRi(rgb, out, 255);
    expect(m.shift).toBe((12 * 62) / 64);
    expect(m.failed).toEqual(['shift']);
  });

  it('measures on the 8-bit scale for [0, 1] networks; outliers by value or by pixel', () => {
    const unit = (p: Planes) => mapped(p, (v) => v / 255);
    const capped = mapped(RI, (v) => (v === 255 ? 249 : v));
    expect(measureRi(unit(capped), unit(nearest2(capped)), 1).failed).toEqual(['range']);
    const rgb: Planes = { channels: 3, height: 8, width: 8, data: [...RI.data, ...RI.data, ...RI.data].map((v) => v / 255) };
    // HR pixel 0 (value 0 in every channel) below 0 in all three channels.
    const out = mapped(nearest2(rgb), (v, i) => (i % 256 === 0 ? -0.01 : v));
    expect(measureRi(rgb, out, 1).outliers).toBe(3);
    expect(measureRi(rgb, out, 1, { outlierUnit: 'pixel' }).outliers).toBe(1);
  });

  it('the paper\'s thresholds are the defaults; a bad threshold is a ValueError naming it', () => {
    expect(CFQP_THRESHOLDS).toEqual({ outliers: 25, range: 5, deviation: 5, shift: 10 });
    expect(cfqpThresholds({ shift: 3 })).toEqual({ outliers: 25, range: 5, deviation: 5, shift: 3 });
    expect(() => cfqpThresholds({ range: -1 })).toThrow(ValueError);
    expect(() => cfqpThresholds({ range: -1 })).toThrow("threshold 'range' must be a number ≥ 0, got -1");
    expect(() => cfqpThresholds({ shift: '3' as unknown as number })).toThrow("threshold 'shift' must be a number ≥ 0, got 3");
    // Infinity turns a check off.
    expect(measureRi(RI, mapped(nearest2(RI), (v) => v + 160), 255, { thresholds: { shift: Infinity, range: Infinity, deviation: Infinity } }).failed).toEqual(['outliers']);
    expect(() => measureRi(RI, nearest2(RI), 255, { thresholds: { outliers: Number.NaN } })).toThrow("threshold 'outliers'");
  });
});

describe('Method 2 building blocks', () => {
  it('boxBlur3: mean of the 3×3 neighbourhood, borders mirrored without the edge (cv2.blur), over the image, a box or points', () => {
    const img = createImage(3, 3, 1, Uint8Array.from([0, 0, 0, 0, 90, 0, 0, 0, 0]));
    // Corner: the centre is read 4 times (rows 1,0,1 × cols 1,0,1); edge: twice; centre: once.
    expect(Array.from(boxBlur3(img).data)).toEqual([40, 20, 40, 20, 10, 20, 40, 20, 40]);
    expect(Array.from(boxBlur3(img, { top: 0, left: 0, bottom: 0, right: 1 }).data)).toEqual([40, 20, 0, 0, 90, 0, 0, 0, 0]);
    expect(Array.from(boxBlur3(img, Uint8Array.from([0, 0, 0, 0, 1, 0, 0, 0, 1])).data)).toEqual([0, 0, 0, 0, 10, 0, 0, 0, 40]);
    // Each channel apart; one row is read three times; x = 0 reads cols 1,0,1 and x = 2 cols 1,2,1;
    // rounded to nearest: 600/9 = 66.7 → 67, 12/9 = 1.33 → 1.
    const row = createImage(3, 1, 3, Uint8Array.from([9, 0, 200, 0, 0, 0, 0, 4, 0]));
    expect(Array.from(boxBlur3(row).data)).toEqual([3, 0, 67, 3, 1, 67, 0, 1, 0]);
    expect(() => boxBlur3(createImage(2, 2, 2))).toThrow(ValueError);
  });

  it('outlierPoints: HR (y, x) lies over LR (⌊y/s⌋, ⌊x/s⌋); 0 and the range itself are in range', () => {
    // ×2, LR 2×3 (HR 4×6).
    const hr = Array.from({ length: 4 }, () => Array.from({ length: 6 }, () => 255));
    hr[0][0] = -0.001;
    hr[3][3] = 255.001;
    hr[2][5] = 0;
    const { mask, box } = outlierPoints(plane(hr), 2, 255);
    expect(Array.from(mask)).toEqual([1, 0, 0, 0, 1, 0]);
    expect(box).toEqual({ top: 0, left: 0, bottom: 1, right: 1 });
    expect(outlierPoints(plane([[0, 1], [1, 0]]), 2, 1).box).toBeNull();
  });
});


/** Nearest ×2 of a [1, C, h, w] tensor, as a network's last layer. */
const up2 = (y: Tensor) => pixelShuffle(concat([y, y, y, y], 1), 2);

/**
 * A ×2 "network" on one channel in [0, 255]: a 3×3 sharpening (5·centre − 4 neighbours, zero
 * padding), then nearest ×2. Flat regions pass; edges overshoot below 0 and above 255, as SR
 * models do, and a blur of the input shrinks the overshoot. Counts its forward passes.
 */
class Sharpen extends Module {
  readonly scale = 2;
  calls = 0;

  constructor() {
    super();
    const conv = this.registerModule('conv', new Conv2d(1, 1, 3, { padding: 1, bias: false }));
    noGrad(() => conv.weight.assign(tensor([0, -1, 0, -1, 5, -1, 0, -1, 0], [1, 1, 3, 3])));
  }

  override forward(x: Tensor): Tensor {
    this.calls++;
    return up2(this.child('conv').call(x));
  }
}

/** A 16×16 gray RI: `lo` with a `hi` square over rows and columns from..to, and a ±`checker` texture outside it. */
function squareRi(lo = 60, hi = 200, from = 5, to = 10, checker = 0): Image {
  return createImage(16, 16, 1, Uint8Array.from({ length: 256 }, (_, i) => {
    const [x, y] = [i % 16, i >> 4];
    return x >= from && x <= to && y >= from && y <= to ? hi : lo + checker * ((x + y) % 2);
  }));
}

function sharpen() {
  const model = new Sharpen();
  return { model, upscaler: Upscaler.fromModel(model, { range: 255, colors: 1 }) };
}

const trial = (r: RiRepair, m: BlurMethod) => r.trials.find((t) => t.method === m)!;

describe('Method 2: blur repairs a bad RI', () => {
  it('each of GB, LIBB and LIPB lowers the outlier count; the fewest wins, the least blurred on a tie', async () => {
    const { model, upscaler } = sharpen();
    const repair = await repairRi(upscaler, squareRi());
    // The square's edge ring overshoots on both sides: 44 LR points, 176 HR values.
    expect(repair.before.outliers).toBe(176);
    expect(repair.trials.map((t) => [t.method, t.outliers])).toEqual([['gb', [176, 16]], ['libb', [176, 16, 0]], ['lipb', [176, 32, 32, 0]]]);
    for (const t of repair.trials) expect(t.measures.outliers, t.method).toBeLessThan(repair.before.outliers);
    expect(model.calls).toBe(1 + 1 + 2 + 3);
    // LIBB and LIPB both reach 0: LIPB, which blurred fewer pixels, is kept.
    expect([repair.best, repair.after.outliers, repair.image]).toEqual(['lipb', 0, trial(repair, 'lipb').image]);
    // One blur each: GB and LIBB tie at 16, below LIPB's 32; LIBB (the smaller region) is kept.
    const once = await repairRi(upscaler, squareRi(), { maxIterations: 1 });
    expect(once.trials.map((t) => t.measures.outliers)).toEqual([16, 16, 32]);
    expect(once.best).toBe('libb');
  });

  it('LIPB blurs only the LR points under outlier HR pixels, LIBB only their bounding box, GB everything', async () => {
    const { upscaler } = sharpen();
    const ri = squareRi(60, 200, 5, 10, 2);
    const { points } = await respondTo(upscaler, ri);
    expect(points.box).toEqual({ top: 4, left: 4, bottom: 11, right: 11 });
    const once = await repairRi(upscaler, ri, { maxIterations: 1 });
    const changed = (img: Image) => Array.from(img.data).flatMap((v, i) => (v !== ri.data[i] ? [i] : []));
    const inBox = (i: number) => i % 16 >= 4 && i % 16 <= 11 && i >> 4 >= 4 && i >> 4 <= 11;
    const [gb, libb, lipb] = (['gb', 'libb', 'lipb'] as const).map((m) => changed(trial(once, m).image));
    expect(lipb.length).toBeGreaterThan(0);
    expect(lipb.every((i) => points.mask[i] === 1)).toBe(true);
    expect(libb.every(inBox)).toBe(true);
    // The box's corner (4, 4) is no outlier point, yet LIBB blurs it; GB blurs the texture outside the box.
    expect([libb.includes(4 * 16 + 4), lipb.includes(4 * 16 + 4)]).toEqual([true, false]);
    expect(gb.some((i) => !inBox(i))).toBe(true);
  });

  it('the iteration cap holds: at most maxIterations blurs and forward passes per local method', async () => {
    // A network that adds 200: every value above 55 stays an outlier whatever the blur, so only the cap stops LIBB/LIPB.
    class AddAndUp extends Module {
      readonly scale = 2;
      calls = 0;
      override forward(x: Tensor): Tensor {
        this.calls++;
        return up2(x.add(200));
      }
    }
    const model = new AddAndUp();
    const upscaler = Upscaler.fromModel(model, { range: 255, colors: 1 });
    const noisy = createImage(12, 12, 1, Uint8Array.from({ length: 144 }, (_, i) => (i * 97) % 256));
    const repair = await repairRi(upscaler, noisy, { maxIterations: 3 });
    expect(repair.trials.map((t) => [t.method, t.iterations])).toEqual([['gb', 1], ['libb', 3], ['lipb', 3]]);
    expect(repair.trials.every((t) => t.measures.outliers > 0)).toBe(true);
    // 1 pass for the RI, 1 for GB, 3 each for LIBB and LIPB.
    expect(model.calls).toBe(1 + 1 + 3 + 3);
    await expect(repairRi(upscaler, noisy, { maxIterations: 0 })).rejects.toThrow('maxIterations must be an integer ≥ 1, got 0');
    await expect(repairRi(upscaler, noisy, { methods: ['box' as BlurMethod] })).rejects.toThrow("unknown blur 'box'");
  });

  it('an RI without outliers keeps itself: LIBB/LIPB have nothing to blur, GB stops at a fixed point', async () => {
    const { model, upscaler } = sharpen();
    const flat = createImage(8, 8, 1, new Uint8Array(64).fill(60));
    const repair = await repairRi(upscaler, flat);
    expect(repair.before.outliers).toBe(0);
    expect(repair.trials.map((t) => t.iterations)).toEqual([0, 0, 0]);
    expect(model.calls).toBe(1);
    expect([repair.best, repair.image]).toEqual(['none', flat]);
  });

  it('stops when aborted', async () => {
    const { upscaler } = sharpen();
    const controller = new AbortController();
    const run = repairRi(upscaler, squareRi(), { signal: controller.signal, onProgress: () => controller.abort() });
    await expect(run).rejects.toThrow(/aborted/i);
  });
});

/** A ×2 "network" that scales by 256/255: only values of 255 leave the range (4 HR values each). */
class Gain extends Module {
  readonly scale = 2;
  override forward(x: Tensor): Tensor {
    return up2(x.mul(256 / 255));
  }
}

/** A 16×16 RI with a 0, then `bright` pixels at 255, the rest 128. */
const brightRi = (bright: number) => createImage(16, 16, 1, Uint8Array.from({ length: 256 }, (_, i) => (i === 0 ? 0 : i <= bright ? 255 : 128)));

describe('cfqpSelect and cfqp', () => {
  it('Method 1 keeps the good candidate with the fewest outliers; RGB candidates become gray', async () => {
    const upscaler = Upscaler.fromModel(new Gain(), { range: 255, colors: 1 });
    const flat = createImage(16, 16, 1, new Uint8Array(256).fill(128));
    // White in RGB is 255 in gray; the gray of (255, 0, 0) is 76.
    const rgb = grayToRgb(brightRi(2));
    const candidates = [
      { name: 'flat', image: flat }, { name: 'seven', image: brightRi(7) }, { name: 'three', image: brightRi(3) },
      { name: 'rgb-two', image: rgb }, { name: 'two', image: brightRi(2) },
    ];
    const s = await cfqpSelect(upscaler, candidates);
    expect(s.candidates.map((c) => [c.name, c.measures.outliers, c.measures.failed])).toEqual([
      ['flat', 0, ['range']], ['seven', 28, ['outliers']], ['three', 12, []], ['rgb-two', 8, []], ['two', 8, []],
    ]);
    // 'rgb-two' and 'two' tie at 8: the first is kept, as gray.
    expect([s.name, s.by, s.repair, s.measures.outliers]).toEqual(['rgb-two', 'method1', null, 8]);
    expect(s.ri).toEqual(brightRi(2));
    const asRgb = await cfqpSelect(upscaler, [{ name: 'red', image: createImage(1, 1, 3, Uint8Array.from([255, 0, 0])) }], { color: 'rgb' });
    expect(asRgb.ri.channels).toBe(3);
    expect(representativeImage(createImage(1, 1, 3, Uint8Array.from([255, 0, 0]))).data[0]).toBe(76);
  });

  it('with no good candidate, Method 2 repairs the one with the fewest outliers; cfqp calibrates on the result', async () => {
    const { model, upscaler } = sharpen();
    const candidates = [{ name: 'big', image: squareRi() }, { name: 'small', image: squareRi(60, 200, 7, 8) }];
    const s = await cfqpSelect(upscaler, candidates);
    expect(s.candidates.map((c) => c.measures.outliers)).toEqual([176, 48]);
    expect([s.by, s.name, s.repair!.name, s.repair!.before, s.repair!.after]).toEqual(['method2', 'small', 'small', 48, 0]);
    expect(s.measures.outliers).toBe(0);

    await expect(cfqp(upscaler, [])).rejects.toThrow('cfqp: no candidate images');
    await expect(cfqp(upscaler, candidates, { thresholds: { deviation: -2 } })).rejects.toThrow("threshold 'deviation'");
    const r = await cfqp(upscaler, candidates);
    expect([r.name, r.repair!.best, r.repair!.after]).toEqual([s.name, s.repair!.best, 0]);
    // The model is now INT8, calibrated on the repaired RI alone: the conv input's range is that
    // image's (min widened to 0, so zero point −128; max the blurred square's, below 200).
    expect(Object.keys(r.ranges)).toEqual(['conv.quant_input', 'conv.quant_output']);
    const input = r.ranges['conv.quant_input'];
    const riMax = Math.max(...r.ri.data);
    expect(riMax).toBeLessThan(200);
    expect([input.min, input.zeroPoint, input.bits]).toEqual([0, -128, 8]);
    expect(input.max).toBeCloseTo(riMax, 4);
    expect(input.scale).toBeCloseTo(riMax / 255, 6);
    for (const p of Object.values(r.ranges)) expect(p.min).toBeCloseTo((-128 - p.zeroPoint) * p.scale, 3);
    expect(model.namedModules().filter(([, m]) => m instanceof ActivationQuantizer)).toHaveLength(2);
    await expect(cfqpSelect(upscaler, candidates)).rejects.toThrow('is quantized');
  });
});
