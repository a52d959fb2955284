/**
 * The compiled `file_contexts.bin` (sefcontext_compile; libselinux load_mmap), versions 1–5.
 * Integers are host-order u32 (little-endian on every platform images come from here); strings
 * are length-prefixed. Version 6 (libselinux ≥ 3.8, a tree layout in network order) is refused
 * with a typed error: the text file_contexts that ships beside it is used instead.
 *
 * | field                 | size            | notes                                              |
 * |-----------------------|-----------------|----------------------------------------------------|
 * | magic                 | u32             | 0xf97cff8a                                         |
 * | version               | u32             | 1 no regex version, 2 PCRE version, 3 u32 mode, 4 prefix_len, 5 arch string |
 * | regex version length  | u32 (v ≥ 2)     | then that many bytes, no NUL ("10.42 2022-12-11")  |
 * | arch string length    | u32 (v ≥ 5)     | then that many bytes ("x86_64-8-1234")             |
 * | stem count            | u32             |                                                    |
 * |   stem length         | u32             | without the NUL; then length+1 bytes (NUL-ended)   |
 * | spec count            | u32             | ≥ 1                                                |
 * |   context length      | u32             | with the NUL; then the context ("<<none>>" too)    |
 * |   regex length        | u32             | with the NUL; then the regex as written            |
 * |   mode                | u32             | S_IFMT value or 0                                  |
 * |   stem id             | i32             | index into the stems, -1 none                      |
 * |   has meta chars      | u32             |                                                    |
 * |   prefix length       | u32 (v ≥ 4)     |                                                    |
 * |   compiled regex      | PCRE2: u32 length + bytes (0 = not stored); PCRE1: u32 length + bytes, u32 study length + bytes |
 *
 * The specs are stored after libselinux's sort (meta-character specs first); we only need the
 * strings, mode and order — the compiled expressions are skipped and recompiled from the text.
 */
import { SelinuxPolicyError } from "./errors.js";
import type { FileContextSpec } from "./file-contexts.js";

export const FCONTEXT_BIN_MAGIC = 0xf97cff8a;
const MAX_SUPPORTED = 5;

export function isFcontextBin(data: Uint8Array): boolean {
  return (
    data.length >= 4 &&
    new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true) === FCONTEXT_BIN_MAGIC
  );
}

export function parseFcontextBin(data: Uint8Array, file: string): FileContextSpec[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let off = 0;
  const fail = (why: string, at = off): never => {
    throw new SelinuxPolicyError(file, why, { offset: at });
  };
  const u32 = (what: string): number => {
    if (off + 4 > data.length) fail(`truncated (${what})`);
    const v = view.getUint32(off, true);
    off += 4;
    return v;
  };
  const bytes = (len: number, what: string): Uint8Array => {
    if (len > data.length - off) fail(`truncated (${what}: ${len} bytes)`);
    const b = data.subarray(off, off + len);
    off += len;
    return b;
  };
  const cstr = (len: number, what: string): string => {
    const at = off;
    if (len === 0) fail(`empty ${what}`);
    const b = bytes(len, what);
    if (b[len - 1] !== 0) fail(`${what} is not NUL-terminated`, at);
    const s = Buffer.from(b.subarray(0, len - 1)).toString("latin1");
    if (s.includes("\0")) fail(`${what} holds a NUL`, at);
    return s;
  };

  if (u32("magic") !== FCONTEXT_BIN_MAGIC) fail("not a compiled file_contexts (bad magic)", 0);
  const version = u32("version");
  if (version === 0 || version > MAX_SUPPORTED)
    fail(
      version === 6
        ? "compiled file_contexts version 6 (libselinux ≥ 3.8 tree layout) is not supported"
        : `unknown compiled file_contexts version ${version}`,
      4,
    );
  let pcre2 = false;
  if (version >= 2) {
    const v = Buffer.from(bytes(u32("regex version length"), "regex version")).toString("latin1");
    pcre2 = /^1\d\./.test(v);
  }
  if (version >= 5) bytes(u32("arch string length"), "arch string");
  const stems = u32("stem count");
  for (let i = 0; i < stems; i++) {
    const len = u32("stem length");
    if (len === 0 || len === 0xffffffff) fail("bad stem length");
    cstr(len + 1, "stem");
  }
  const count = u32("spec count");
  if (count === 0) fail("no specs");
  // each spec takes at least 6 u32 fields: a count beyond that is damage, not a reason to allocate
  if (count > (data.length - off) / 24) fail(`spec count ${count} exceeds the file`);
  const specs: FileContextSpec[] = [];
  for (let i = 0; i < count; i++) {
    const context = cstr(u32("context length"), "context");
    const regex = cstr(u32("regex length"), "regex");
    const mode = u32("mode");
    u32("stem id");
    u32("meta flag");
    if (version >= 4) u32("prefix length");
    bytes(u32("compiled regex length"), "compiled regex");
    if (!pcre2) bytes(u32("study data length"), "study data");
    if (/[\x80-\xff]/.test(regex)) fail(`spec ${i + 1}: non-ASCII regex`);
    specs.push({ regex, mode, context: context === "<<none>>" ? null : context, file, line: i + 1 });
  }
  return specs;
}
