// Training losses beyond the pixel ones in nn/functional: the attention-transfer term of PAMS
// knowledge distillation (ALGORITHMS §3).
import { ShapeError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { div, maximum, mean, mul, reshape, sqrt, sub, sum } from '../ops.js';
import { fmt } from '../tensor/shape.js';

/**
 * The attention map of a feature map F [N, C, H, W]: per sample, the mean over channels of F²,
 * L2-normalised over the H·W positions (F.normalize's eps 1e-12 guards an all-zero map). [N, H·W].
 */
export function attentionMap(features: Tensor): Tensor {
  if (features.rank !== 4) throw new ShapeError(`attentionMap: expected [N, C, H, W], got ${fmt(features.shape)}`);
  const [n, , h, w] = features.shape;
  const a = reshape(mean(mul(features, features), 1), [n, h * w]);
  const norm = sqrt(sum(mul(a, a), 1, true));
  return div(a, maximum(norm, 1e-12));
}

/** L_AT = mean over samples and positions of (a(student) − a(teacher))² (ALGORITHMS §3, PAMS). */
export function attentionTransferLoss(student: Tensor, teacher: Tensor): Tensor {
  const same = student.rank === teacher.rank && student.shape.every((d, i) => d === teacher.shape[i]);
  if (!same) throw new ShapeError(`attentionTransferLoss: student ${fmt(student.shape)} and teacher ${fmt(teacher.shape)} differ`);
  const d = sub(attentionMap(student), attentionMap(teacher));
  return mean(mul(d, d));
}
