/** Element types a tensor can hold. float64 exists on the CPU backend for gradient checks. */
export type DType = 'float32' | 'float64' | 'int32' | 'uint8';

export type FloatArray = Float32Array | Float64Array;
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

const ctors = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  uint8: Uint8Array,
} as const;

/** Allocates a zeroed typed array of `dtype` with `size` elements. */
export function allocArray(dtype: DType, size: number): TypedArray {
  return new ctors[dtype](size);
}

/** Bytes per element of `dtype`. */
export function itemSize(dtype: DType): number {
  return ctors[dtype].BYTES_PER_ELEMENT;
}

/** True for dtypes that carry gradients. */
export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

/** The dtype whose typed array is `a`. */
export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  return 'uint8';
}
