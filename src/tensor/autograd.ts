import { ShapeError, ValueError } from './errors.js';
import { fmt, sameShape } from './shape.js';
import { type Tensor, fullLike, wrap } from './tensor.js';
import { keep, tidy } from './memory.js';

let gradEnabled = true;

/** Whether ops currently record gradient history. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording gradient history (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

/** Tensors reachable from `root` through gradient history, inputs before their consumers. */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  // An explicit stack: EDSR-sized graphs are thousands of nodes deep.
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length > 0) {
    const [t, expanded] = stack.pop()!;
    if (expanded) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    // dispose() clears gradNode, so a disposed intermediate would pass for a leaf and the
    // gradient would silently stop there (e.g. backward() after the tidy() that built the graph).
    if (t.isDisposed) {
      throw new ValueError(
        `backward(): tensor ${fmt(t.shape)} ${t.dtype} in the graph of ${fmt(root.shape)} was disposed ` +
          '(by tidy()?); call backward() inside the tidy() that built the graph',
      );
    }
    stack.push([t, true]);
    for (const input of t.gradNode?.inputs ?? []) {
      if (input.requiresGrad && !visited.has(input)) stack.push([input, false]);
    }
  }
  return order;
}

/** Reverse-mode differentiation of `root`; gradients accumulate into the leaves' `grad`. */
export function runBackward(root: Tensor, seed?: Tensor): void {
  if (!root.requiresGrad) throw new ValueError(`backward(): tensor ${fmt(root.shape)} does not require gradients`);
  if (seed && !sameShape(seed.shape, root.shape)) {
    throw new ShapeError(`backward(): gradient ${fmt(seed.shape)} does not match tensor ${fmt(root.shape)}`);
  }
  if (!seed && root.size !== 1) {
    throw new ShapeError(`backward(): tensor ${fmt(root.shape)} is not a scalar; pass its gradient`);
  }
  const order = topologicalOrder(root);
  const userSeed = seed;
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>([[root, seed ?? fullLike(root, 1)]]);
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.gradNode;
      if (!node) {
        accumulateLeaf(t, g === userSeed ? g.detach() : g);
        continue;
      }
      // tidy: temporaries of the gradient rule (masks, casts) are freed, not leaked per step.
      const inputGrads = tidy(() => node.backward(g));
      node.inputs.forEach((input, k) => {
        const gi = inputGrads[k];
        if (!gi) return;
        if (!input.requiresGrad) {
          if (gi !== g) gi.dispose();
          return;
        }
        const previous = grads.get(input);
        if (!previous) {
          grads.set(input, gi === g ? g.detach() : gi);
          return;
        }
        grads.set(input, addGrads(previous, gi));
        previous.dispose();
        if (gi !== g) gi.dispose();
      });
      if (g !== userSeed) g.dispose();
    }
  });
}

/** a + b for two gradients of one tensor (same shape; no graph: backward runs without one), on their backend. */
function addGrads(a: Tensor, b: Tensor): Tensor {
  return wrap(a.backend, a.backend.binary('add', a.kernel, b.kernel, a.shape), a.shape, a.dtype);
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.grad) {
    const sum = addGrads(leaf.grad, g);
    leaf.grad.dispose();
    g.dispose();
    leaf.grad = keep(sum);
  } else {
    leaf.grad = keep(g);
  }
}
