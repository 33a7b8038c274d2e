// PReLU as one differentiable op: a fused kernel on each backend rather than four broadcast ops.
import { BackendError, DTypeError, ShapeError } from '../../tensor/errors.js';
import { fmt } from '../../tensor/shape.js';
import { isFloat } from '../../tensor/dtype.js';
import { type Tensor, emit, wrap } from '../../tensor/tensor.js';

/** PReLU, y = x > 0 ? x : a·x, with one slope a per channel (axis 1) or a single shared slope. */
export function prelu(x: Tensor, weight: Tensor): Tensor {
  const channels = x.rank > 1 ? x.shape[1] : 1;
  if (weight.size !== 1 && weight.size !== channels) {
    throw new ShapeError(`prelu: weight ${fmt(weight.shape)} must have 1 or ${channels} elements for input ${fmt(x.shape)}`);
  }
  if (!isFloat(x.dtype)) throw new DTypeError(`prelu: x must be float32 or float64, got ${x.dtype}`);
  if (weight.dtype !== x.dtype) throw new DTypeError(`prelu: weight is ${weight.dtype}, x is ${x.dtype}`);
  if (weight.backend !== x.backend) {
    throw new BackendError(`prelu: weight lives on '${weight.backend.name}', x on '${x.backend.name}'; move one with await t.to()`);
  }
  return emit('prelu', [x, weight], x.backend.prelu(x.kernel, weight.kernel), x.shape, x.dtype, (gy) => {
    const [gxData, gwData] = x.backend.preluBackward(gy.kernel, x.kernel, weight.kernel);
    const gx = wrap(x.backend, gxData, x.shape, x.dtype);
    const gw = wrap(x.backend, gwData, weight.shape, x.dtype);
    // tidy() in backward() frees whichever of these is not returned.
    return [x.requiresGrad ? gx : null, weight.requiresGrad ? gw : null];
  });
}
