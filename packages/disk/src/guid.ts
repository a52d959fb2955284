/**
 * GUIDs as stored by GPT (and most of the Microsoft/UEFI world): the first three fields are
 * little-endian, the last two are byte strings. Formatted lowercase, as Linux shows PARTUUIDs.
 */
export function formatGuid(bytes: Uint8Array, off = 0): string {
  const h = (i: number) => bytes[off + i].toString(16).padStart(2, "0");
  const le = (...idx: number[]) => idx.map(h).join("");
  return [le(3, 2, 1, 0), le(5, 4), le(7, 6), le(8, 9), le(10, 11, 12, 13, 14, 15)].join("-");
}

/** Inverse of formatGuid: 16 bytes in on-disk (mixed-endian) order. */
export function parseGuid(text: string): Uint8Array {
  const hex = text.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex) || !/^[^-]{8}-[^-]{4}-[^-]{4}-[^-]{4}-[^-]{12}$/.test(text)) {
    throw new TypeError(`not a GUID: ${text}`);
  }
  const b = (i: number) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  return Uint8Array.from(order.map(b));
}

/** A big-endian UUID (ext4, xfs, btrfs, LUKS binary...) formatted the usual way. */
export function formatUuid(bytes: Uint8Array, off = 0): string {
  let s = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += bytes[off + i].toString(16).padStart(2, "0");
  }
  return s;
}

export const ZERO_GUID = "00000000-0000-0000-0000-000000000000";
