/** Big-endian helpers for 64-bit fields held in JS numbers (exact below 2^53). */

const TWO32 = 0x1_0000_0000;

/** Read an unsigned 64-bit big-endian value; returns -1 when it does not fit in 2^53. */
export function getU64(view: DataView, at: number): number {
  const hi = view.getUint32(at);
  if (hi > 0x1f_ffff) return -1;
  return hi * TWO32 + view.getUint32(at + 4);
}

export function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / TWO32));
  view.setUint32(at + 4, value >>> 0);
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

export const TWO_POW_32 = TWO32;

/** A buffer whose contents are garbage: only for callers that fill every byte. */
export function uninitialized(n: number): Uint8Array {
  return Buffer.allocUnsafeSlow(n);
}
