import { DTypeError, ShapeError, ValueError } from '../../tensor/errors.js';
import { fmt } from '../../tensor/shape.js';
import { type Tensor, emit, wrap } from '../../tensor/tensor.js';

function checkImage(op: string, x: Tensor): void {
  if (x.rank !== 4) throw new ShapeError(`${op}: input must be [N, C, H, W], got ${fmt(x.shape)}`);
}

/** Average pooling to a fixed output size with PyTorch's adaptive windows. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | readonly [number, number]): Tensor {
  checkImage('adaptiveAvgPool2d', x);
  const size: [number, number] = typeof outputSize === 'number' ? [outputSize, outputSize] : [outputSize[0], outputSize[1]];
  if (size.some((d) => !Number.isInteger(d) || d < 1)) throw new ValueError(`adaptiveAvgPool2d: output size ${fmt(size)} must be positive integers`);
  const shape = [x.shape[0], x.shape[1], size[0], size[1]];
  return emit('adaptiveAvgPool2d', [x], x.backend.adaptiveAvgPool2d(x.kernel, size), shape, x.dtype, (gy) => [
    wrap(gy.backend, gy.backend.adaptiveAvgPool2dBackward(gy.kernel, x.shape), x.shape, gy.dtype),
  ]);
}

export interface InterpolateOptions {
  /** Output [height, width]; give this or scaleFactor. */
  size?: number | readonly [number, number];
  scaleFactor?: number | readonly [number, number];
  mode?: 'bilinear';
  alignCorners?: false;
}

/** Bilinear resampling with align_corners = false (F.interpolate). */
export function interpolate(x: Tensor, options: InterpolateOptions): Tensor {
  checkImage('interpolate', x);
  if ((options.mode ?? 'bilinear') !== 'bilinear' || options.alignCorners) {
    throw new ValueError(`interpolate: only mode 'bilinear' with alignCorners false is implemented`);
  }
  const [, , h, w] = x.shape;
  let size: [number, number];
  let scales: [number, number] | undefined;
  if (options.size !== undefined) {
    size = typeof options.size === 'number' ? [options.size, options.size] : [options.size[0], options.size[1]];
  } else if (options.scaleFactor !== undefined) {
    const f = options.scaleFactor;
    scales = typeof f === 'number' ? [f, f] : [f[0], f[1]];
    size = [Math.floor(h * scales[0]), Math.floor(w * scales[1])];
  } else {
    throw new ValueError('interpolate: give size or scaleFactor');
  }
  if (size.some((d) => !Number.isInteger(d) || d < 1)) throw new ValueError(`interpolate: output size ${fmt(size)} is empty`);
  const shape = [x.shape[0], x.shape[1], size[0], size[1]];
  return emit('interpolate', [x], x.backend.resizeBilinear(x.kernel, size, scales), shape, x.dtype, (gy) => [
    wrap(gy.backend, gy.backend.resizeBilinearBackward(gy.kernel, x.shape, scales), x.shape, gy.dtype),
  ]);
}

export interface GridSampleOptions {
  mode?: 'bilinear';
  paddingMode?: 'zeros';
  alignCorners?: boolean;
}

/** Samples x at grid [N, Ho, Wo, 2] (x, y in [−1, 1]); bilinear, zero padding, align_corners = true. */
export function gridSample(x: Tensor, grid: Tensor, options: GridSampleOptions = {}): Tensor {
  checkImage('gridSample', x);
  if ((options.mode ?? 'bilinear') !== 'bilinear' || (options.paddingMode ?? 'zeros') !== 'zeros' || options.alignCorners === false) {
    throw new ValueError(`gridSample: only bilinear, zero padding, alignCorners true is implemented`);
  }
  if (grid.rank !== 4 || grid.shape[3] !== 2 || grid.shape[0] !== x.shape[0]) {
    throw new ShapeError(`gridSample: grid ${fmt(grid.shape)} must be [${x.shape[0]}, Ho, Wo, 2] for input ${fmt(x.shape)}`);
  }
  if (grid.dtype !== x.dtype) throw new DTypeError(`gridSample: grid is ${grid.dtype}, input is ${x.dtype}`);
  const shape = [x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]];
  return emit('gridSample', [x, grid], x.backend.gridSample(x.kernel, grid.kernel), shape, x.dtype, (gy) => {
    const [gx, gg] = gy.backend.gridSampleBackward(gy.kernel, x.kernel, grid.kernel);
    return [wrap(gy.backend, gx, x.shape, gy.dtype), wrap(gy.backend, gg, grid.shape, gy.dtype)];
  });
}
