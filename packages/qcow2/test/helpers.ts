import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { qemuImg, qemuImgCheck, qemuImgCompare, qemuImgInfo } from "@imgpatch/testkit";
import { expect } from "vitest";
import { openQcow2, type Qcow2Device } from "../src/index.js";

/** Deterministic bytes (xorshift) — incompressible. */
export function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Deterministic compressible bytes: words from a small alphabet, with runs. */
export function compressibleBytes(n: number, seed: number): Uint8Array {
  const r = randomBytes(n, seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = 97 + (r[i]! % 6);
  return out;
}

/** Read a whole device. */
export async function readAll(dev: Qcow2Device): Promise<Uint8Array> {
  return dev.read(0, dev.size);
}

/** qemu-img's view of an image's guest bytes. */
export async function qemuRaw(dir: string, image: string): Promise<Uint8Array> {
  const out = join(dir, `raw-${Math.random().toString(36).slice(2)}.raw`);
  await qemuImg(["convert", "-O", "raw", image, out]);
  const bytes = new Uint8Array(await readFile(out));
  await rm(out);
  return bytes;
}

/** Assert qemu-img check finds neither errors nor leaks, and the guest bytes equal `expected`. */
export async function expectCleanAndEqual(dir: string, image: string, expected: Uint8Array): Promise<void> {
  const check = await qemuImgCheck(image);
  expect(check.json, `qemu-img check ${image}`).toMatchObject({ "check-errors": 0 });
  expect({ leaks: check.leaks, corruptions: check.corruptions, exit: check.exitCode }).toEqual({
    leaks: 0,
    corruptions: 0,
    exit: 0,
  });
  const raw = join(dir, `expected-${Math.random().toString(36).slice(2)}.raw`);
  await writeFile(raw, expected);
  const info = await qemuImgInfo(image);
  expect(info["virtual-size"], "virtual size").toBe(expected.length);
  const cmp = await qemuImgCompare(image, raw, { formatA: "qcow2", formatB: "raw" });
  expect(cmp.output).toContain("Images are identical");
}

/** First differing offset of two buffers, or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

export function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  const d = firstDiff(actual, expected);
  expect(d, `${what}: first difference at ${d} (lengths ${actual.length}/${expected.length})`).toBe(-1);
}

interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

/**
 * `qemu-img map` of the top layer in our extent vocabulary (merged): what a backing image
 * provides (depth > 0) is "unallocated" in this layer.
 */
export async function qemuMap(image: string): Promise<{ offset: number; length: number; kind: string }[]> {
  const entries = JSON.parse(await qemuImg(["map", "--output=json", image])) as QemuMapEntry[];
  const out: { offset: number; length: number; kind: string }[] = [];
  for (const e of entries) {
    const kind = !e.present || e.depth > 0 ? "unallocated" : e.data ? "data" : "zero";
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.offset + last.length === e.start) last.length += e.length;
    else out.push({ offset: e.start, length: e.length, kind });
  }
  return out;
}

/** Our mapExtents of the image agrees with qemu-img map. */
export async function expectSameMap(image: string): Promise<void> {
  const dev = await openQcow2(image, { readOnly: true });
  try {
    expect(await dev.mapExtents(0, dev.size)).toEqual(await qemuMap(image));
  } finally {
    await dev.close();
  }
}
