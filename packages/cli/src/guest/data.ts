/** Collects the data forms a GuestFs accepts into one buffer (bounded by the caller's source). */
import type { GuestData } from "./guest-fs.js";

export async function collectGuestData(data: GuestData): Promise<Uint8Array> {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (Symbol.asyncIterator in data) {
    for await (const chunk of data as AsyncIterable<Uint8Array>) {
      chunks.push(chunk);
      total += chunk.length;
    }
  } else {
    for (const chunk of data as Iterable<Uint8Array>) {
      chunks.push(chunk);
      total += chunk.length;
    }
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
