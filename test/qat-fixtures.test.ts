// The QAT methods against PyTorch (../shared/fixtures/qat, made by reference/gen_qat.py from the
// authors' code and ALGORITHMS §3) on every test backend: PAMS/DDTB attention transfer, DDTB's
// dynamic gate, PAMS and DDTB residual blocks with their code's placement, and one ODM
// cooperative step (global, per-tensor, sign-mask) including the parameters after one Adam step.
import { describe, expect, it } from 'vitest';
import {
  ActivationQuantizer, Adam, DynamicGate, EDSR, Module, Random, ResBlock, Sequential, type Tensor, attentionTransferLoss,
  attentionMap, cooperativeBackward, l1Loss, mul, noGrad, presetPlan, quantize, quantizers, sum, tidy,
} from '../src/index.js';
import { testBackends } from './support/backends.js';
import { compareClose, describeShared, loadFixture } from './support/shared.js';

const TOL = 1e-4;

async function expectClose(actual: Tensor, expected: Tensor, what: string, tol = TOL): Promise<void> {
  expect(actual.shape.reduce((a, b) => a * b, 1), `${what}: size`).toBe(expected.size);
  const r = compareClose(await actual.data(), await expected.data(), tol, what);
  expect(r.ok, r.message).toBe(true);
}

/** Writes fixture values into a parameter (shape [1] scalars into [] parameters). */
function setParam(p: Tensor, value: Tensor): void {
  noGrad(() => p.assign(value.shape.length === p.shape.length ? value : value.reshape(p.shape)));
}

/** One EDSR residual block as a model whose body is the block (the fixtures' C = 8). */
class OneBlock extends Module {
  constructor(channels: number) {
    super();
    this.registerModule('body', new Sequential(new ResBlock(channels, 1, new Random(1))));
  }

  quantBody(): string[] {
    return ['body.0'];
  }

  override forward(x: Tensor): Tensor {
    return this.child('body').call(x);
  }
}

for (const backend of testBackends()) {
  describeShared(`QAT fixtures on ${backend}`, () => {
    const load = (name: string) => loadFixture(`fixtures/qat/${name}.safetensors`, { backend });

    for (const k of [0, 1]) {
      it(`attention-transfer loss at_loss_${k}: maps, loss and gradient`, async () => {
        const f = load(`at_loss_${k}`);
        const fs = f.tensors.fs;
        fs.requiresGrad = true;
        const loss = attentionTransferLoss(fs, f.tensors.ft);
        await expectClose(attentionMap(f.tensors.fs), f.tensors.a_s, 'a_s');
        await expectClose(loss, f.tensors.loss, 'loss');
        loss.backward();
        // The loss is ~1e-3 and its gradient ~1e-4: compare relative to the largest element.
        const g = await fs.grad!.data();
        const ref = await f.tensors.grad_fs.data();
        const scale = Math.max(...Array.from(ref, Math.abs));
        expect(Math.max(...Array.from(g, (v, i) => Math.abs(v - ref[i]))) / scale).toBeLessThan(1e-4);
        f.dispose();
      });
    }

    for (const k of [0, 1]) {
      it(`DDTB dynamic gate ddtb_gate_${k}: output, every gradient, logits and BN running stats`, async () => {
        const f = load(`ddtb_gate_${k}`);
        const t = f.tensors;
        const bits = (await t.bits.data())[0];
        const q = new ActivationQuantizer({ kind: 'zero', bits }, 8, backend);
        setParam(q.lo, t.alpha_lower);
        setParam(q.hi, t.alpha_upper);
        const gate = await new DynamicGate(8, 32, new Random(0)).toBackend(backend);
        gate.loadStateDict({
          'reduce.weight': t['atten_c.1.weight'], 'bn.weight': t['atten_c.2.weight'], 'bn.bias': t['atten_c.2.bias'],
          'bn.running_mean': t['atten_c.2.running_mean'], 'bn.running_var': t['atten_c.2.running_var'],
          'bn.num_batches_tracked': gate.stateDict()['bn.num_batches_tracked'], 'expand.weight': t['atten_c.5.weight'],
        });
        q.attachGate(gate);
        q.train();
        const x = t.x;
        x.requiresGrad = true;
        const y = q.call(x);
        await expectClose(y, t.y, 'y');
        await expectClose(gate.logits!, t['inter.logits'], 'logits');
        const reg = tidy(() => sum(mul(gate.logits!, gate.logits!)).div(gate.logits!.size));
        await expectClose(reg, t['inter.reg_mse'], 'reg_mse');
        sum(mul(y, t.gy)).backward();
        await expectClose(x.grad!, t['grad.x'], 'grad.x');
        await expectClose(q.hi.grad!, t['grad.alpha_upper'], 'grad.alpha_upper');
        await expectClose(q.lo.grad!, t['grad.alpha_lower'], 'grad.alpha_lower');
        const gw = gate.stateDict();
        await expectClose((gate as unknown as { child(n: string): Module }).child('expand').parameters()[0].grad!, t['grad.atten_c.5.weight'], 'grad.atten_c.5.weight');
        // The detaching quantizers leave the first conv and the BN affine without gradient.
        expect(gate.child('reduce').parameters()[0].grad).toBeNull();
        await expectClose(gw['bn.running_mean'], t['after.atten_c.2.running_mean'], 'running_mean');
        await expectClose(gw['bn.running_var'], t['after.atten_c.2.running_var'], 'running_var');
        f.dispose();
      });
    }

    for (const method of ['pams', 'ddtb'] as const) {
      it(`${method} residual block (the code's placement): output and every gradient`, async () => {
        const f = load(`${method}_resblock`);
        const t = f.tensors;
        const bits = (await t.bits.data())[0];
        const model = await new OneBlock(8).toBackend(backend);
        quantize(model, presetPlan(method, bits));
        expect(quantizers(model).map(([n]) => n).sort()).toEqual(
          ['body.0.body.0.weight', 'body.0.body.2.input', 'body.0.body.2.weight', 'body.0.out', 'body.0.skip'],
        );
        const sd = model.stateDict();
        const map: Record<string, string> = { 'body.0.weight': 'body.0.body.0.weight', 'body.0.bias': 'body.0.body.0.bias', 'body.3.weight': 'body.0.body.2.weight', 'body.3.bias': 'body.0.body.2.bias' };
        const acts: Record<string, string> = { quant_act1: 'body.0.quant_skip', quant_act2: 'body.0.body.2.quant_input', quant_act3: 'body.0.quant_out' };
        const bounds = method === 'pams' ? [['alpha', 'alpha']] : [['alpha_lower', 'lo'], ['alpha_upper', 'hi']];
        for (const [a, ours] of Object.entries(acts)) for (const [theirs, mine] of bounds) map[`${a}.${theirs}`] = `${ours}.${mine}`;
        for (const [theirs, ours] of Object.entries(map)) setParam(sd[ours], t[theirs]);
        const x = t.x;
        x.requiresGrad = true;
        const y = model.call(x);
        await expectClose(y, t.y, 'y');
        sum(mul(y, t.gy)).backward();
        await expectClose(x.grad!, t['grad.x'], 'grad.x');
        for (const [theirs, ours] of Object.entries(map)) await expectClose(sd[ours].grad!, t[`grad.${theirs}`], `grad.${theirs}`);
        f.dispose();
      });
    }

    for (const granularity of ['global', 'per-tensor', 'sign-mask'] as const) {
      it(`ODM cooperative step (${granularity}): losses, mismatches, combined gradients, one Adam step`, async () => {
        const f = load(`odm_coop_${granularity.replace('-', '_')}`);
        const t = f.tensors;
        const model = await new EDSR({ scale: 2, nResblocks: 2, nFeats: 16, rng: new Random(0) }).toBackend(backend);
        quantize(model, presetPlan('odm', 2));
        const sd = model.stateDict();
        const ours = (name: string) => name.replace(/\.act_l$/, '.quant_input.lo').replace(/\.act_u$/, '.quant_input.hi').replace(/\.wcc_gamma$/, '.quant_weight.gamma');
        const names = Object.keys(t).filter((k) => k.startsWith('param.')).map((k) => k.slice(6));
        for (const n of names) setParam(sd[ours(n)], t[`param.${n}`]);
        const acts = quantizers(model).filter(([, q]) => q instanceof ActivationQuantizer).map(([, q]) => q as ActivationQuantizer);
        expect(acts.length).toBe(4);
        for (const q of acts) q.mismatch = 'ste';
        model.train();
        const trainable = model.trainableParameters();
        const excluded = new Set(quantizers(model).flatMap(([, q]) => q.parameters()));
        const sr = model.call(t.input);
        const lossR = l1Loss(sr, t.target);
        const ms = acts.flatMap((q) => q.takeMismatches());
        const lossM = ms.reduce((a, b) => a.add(b));
        await expectClose(sr, t.output, 'output');
        await expectClose(lossR, t.loss_R, 'loss_R');
        await expectClose(lossM, t.loss_M, 'loss_M');
        const convs = ['body.0.body.0', 'body.0.body.2', 'body.1.body.0', 'body.1.body.2'];
        for (const [i, c] of convs.entries()) await expectClose(ms[i], t[`mismatch.${c}`], `mismatch.${c}`);
        const lambda = (await t.lambda_M.data())[0];
        const readings = cooperativeBackward({ reconstruction: lossR, mismatch: lossM, parameters: trainable, excluded }, { lambda, granularity });
        // The ratio counts elements where both gradients are non-zero, so it is sensitive to exact
        // zeros: in body.1.body.0.weight float32 gives 309 exact zeros of g_M where the float64
        // reference keeps 167 (the rest are round-off residues ~1e-7 of the largest element).
        expect(Math.abs((await readings.conflict.data())[0] - (await t.conflict_ratio.data())[0])).toBeLessThan(0.01);
        if (granularity === 'global') {
          await expectClose(readings.cos, t.cos, 'cos');
          await expectClose(readings.w, t.w, 'w');
        }
        const receives = JSON.parse(f.metadata.receives_grad_M) as string[];
        for (const n of names.filter((k) => !k.startsWith('sub_mean') && !k.startsWith('add_mean'))) {
          const g = sd[ours(n)].grad!;
          await expectClose(g, t[`grad.${n}`], `grad.${n}`, 1e-3);
          if (!receives.includes(n)) continue;
          // λ·w·g_M is ~1e-3 of g_R: check the added part on its own.
          const added = await noGrad(() => g.sub(t[`grad_R.${n}`])).data();
          const want = await noGrad(() => t[`grad.${n}`].sub(t[`grad_R.${n}`])).data();
          const scale = Math.max(...Array.from(want, Math.abs));
          const err = Math.max(...Array.from(added, (v, i) => Math.abs(v - want[i])));
          expect(err / scale, `λ·w·g_M of ${n}`).toBeLessThan(2e-2);
        }
        // One Adam step with the fixture's groups: weights, biases and γ at 1e-4, bounds at 1e-3.
        const bounds = new Set(acts.flatMap((q) => q.bounds()));
        const opt = new Adam([{ params: trainable.filter((p) => !bounds.has(p)), lr: 1e-4 }, { params: [...bounds], lr: 1e-3 }]);
        opt.step();
        for (const n of names.filter((k) => !k.startsWith('sub_mean') && !k.startsWith('add_mean'))) {
          await expectClose(sd[ours(n)], t[`after.${n}`], `after.${n}`, 1e-5);
        }
        f.dispose();
      });
    }
  }, 'fixtures/qat');
}
