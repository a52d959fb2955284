/**
 * CRC16 (ANSI/IBM, reflected polynomial 0xA001) used by the gdt_csum feature for group
 * descriptor checksums; the caller passes the running value (ext4 seeds with 0xFFFF).
 */
const T = new Uint16Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
  T[n] = c;
}

export function crc16(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc & 0xffff;
  for (let i = start; i < end; i++) c = (T[(c ^ data[i]) & 0xff] ^ (c >>> 8)) & 0xffff;
  return c;
}
