/**
 * The compiled `file_contexts.bin` (sefcontext_compile; libselinux load_mmap).
 *
 * Versions 1–5 (libselinux ≤ 3.7): integers are host-order u32 (little-endian on every platform
 * images come from here); strings are length-prefixed; specs stored in lookup order:
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
 *
 * Version 6 (libselinux ≥ 3.8): network byte order, the specs in a tree of path stems:
 *
 * | field                 | size            | notes                                              |
 * |-----------------------|-----------------|----------------------------------------------------|
 * | magic, version        | u32, u32        | 0xf97cff8a, 6                                      |
 * | regex version, arch   | u32 + bytes ×2  | as above                                           |
 * | spec count            | u64             |                                                    |
 * | context count         | u32             | then per context: u16 length + bytes (no NUL)      |
 * | node                  |                 | the root, then its children depth first (≤ 32 deep) |
 * |   stem                | u16 + bytes     | length with the NUL; the root's is a lone NUL      |
 * |   literal spec count  | u32             | per spec: u32 context id (1-based), u16 + regex (NUL-ended), u16 + literal (NUL-ended), u8 kind |
 * |   regex spec count    | u32             | per spec: u32 context id, u32 line, u16 + regex (NUL-ended), u16 prefix length, u8 kind, compiled regex (u32 length + bytes; PCRE1 adds u32 length + study data) |
 * |   child count         | u32             | then the children, stems in strictly increasing order |
 *
 * Kinds: 0 any, 1 dir, 2 chr, 3 blk, 4 sock, 5 fifo, 6 lnk, 7 reg. Line numbers give the regex
 * specs their file order back; the literal specs (no meta characters), which libselinux ≤ 3.7
 * moves after every expression anyway, follow in tree order.
 */
import { SelinuxPolicyError } from "./errors.js";
import {
  type FileContextSpec,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
} from "./file-contexts.js";

export const FCONTEXT_BIN_MAGIC = 0xf97cff8a;
const MAX_SUPPORTED = 5;

export function isFcontextBin(data: Uint8Array): boolean {
  if (data.length < 4) return false;
  const v = new DataView(data.buffer, data.byteOffset, 4);
  return v.getUint32(0, true) === FCONTEXT_BIN_MAGIC || v.getUint32(0, false) === FCONTEXT_BIN_MAGIC;
}

export function parseFcontextBin(data: Uint8Array, file: string): FileContextSpec[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  // version 6 is written in network order (its magic reads back big-endian)
  if (data.length >= 4 && view.getUint32(0, false) === FCONTEXT_BIN_MAGIC) return parseTreeLayout(data, file);
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
  if (version === 0 || version > MAX_SUPPORTED) fail(`unknown compiled file_contexts version ${version}`, 4);
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

const KIND_MODES = [0, S_IFDIR, S_IFCHR, S_IFBLK, S_IFSOCK, S_IFIFO, S_IFLNK, S_IFREG];

/** Version 6: see the second table above. */
function parseTreeLayout(data: Uint8Array, file: string): FileContextSpec[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let off = 0;
  const fail = (why: string, at = off): never => {
    throw new SelinuxPolicyError(file, why, { offset: at });
  };
  const need = (n: number, what: string) => {
    if (n > data.length - off) fail(`truncated (${what})`);
  };
  const u8 = (what: string) => {
    need(1, what);
    return data[off++];
  };
  const u16 = (what: string) => {
    need(2, what);
    const v = view.getUint16(off, false);
    off += 2;
    return v;
  };
  const u32 = (what: string) => {
    need(4, what);
    const v = view.getUint32(off, false);
    off += 4;
    return v;
  };
  const skip = (n: number, what: string) => {
    need(n, what);
    off += n;
  };
  const text = (n: number, what: string) => {
    need(n, what);
    const s = Buffer.from(data.subarray(off, off + n)).toString("latin1");
    off += n;
    return s;
  };
  /** A NUL-terminated string of `n` bytes (n ≥ 2). */
  const cstr = (n: number, what: string) => {
    const at = off;
    if (n <= 1) fail(`empty ${what}`);
    const s = text(n, what);
    if (!s.endsWith("\0") || s.slice(0, -1).includes("\0"))
      fail(`${what} is not one NUL-terminated string`, at);
    return s.slice(0, -1);
  };

  u32("magic");
  if (u32("version") !== 6) fail("unknown compiled file_contexts version", 4);
  const pcre2 = /^1\d\./.test(text(u32("regex version length"), "regex version"));
  skip(u32("arch string length"), "arch string");
  need(8, "spec count");
  off += 8;
  const nctx = u32("context count");
  if (nctx > (data.length - off) / 3) fail(`context count ${nctx} exceeds the file`);
  const contexts: string[] = [];
  for (let i = 0; i < nctx; i++) {
    const len = u16("context length");
    if (len === 0 || len === 0xffff) fail("bad context length");
    contexts.push(text(len, "context"));
  }
  const ctx = (id: number): string | null => {
    if (id === 0 || id > contexts.length) fail(`context id ${id} out of range`);
    const c = contexts[id - 1];
    return c === "<<none>>" ? null : c;
  };
  const kind = (k: number): number => {
    if (k >= KIND_MODES.length) fail(`file kind ${k} out of range`);
    return KIND_MODES[k];
  };
  const regexSpecs: Array<FileContextSpec> = [];
  const literalSpecs: Array<FileContextSpec> = [];
  const node = (depth: number): void => {
    if (depth >= 32) fail("spec tree deeper than 32");
    const stemLen = u16("stem length");
    if (stemLen === 0 || (stemLen === 1) !== (depth === 0)) fail("bad stem length");
    skip(stemLen, "stem");
    const nl = u32("literal spec count");
    if (nl > (data.length - off) / 15) fail(`literal spec count ${nl} exceeds the file`);
    for (let i = 0; i < nl; i++) {
      const context = ctx(u32("context id"));
      const regex = cstr(u16("regex length"), "regex");
      cstr(u16("literal length"), "literal");
      const mode = kind(u8("file kind"));
      literalSpecs.push({ regex, mode, context, file, line: 0 });
    }
    const nr = u32("regex spec count");
    if (nr > (data.length - off) / 14) fail(`regex spec count ${nr} exceeds the file`);
    for (let i = 0; i < nr; i++) {
      const context = ctx(u32("context id"));
      const line = u32("line");
      const regex = cstr(u16("regex length"), "regex");
      u16("prefix length");
      const mode = kind(u8("file kind"));
      skip(u32("compiled regex length"), "compiled regex");
      if (!pcre2) skip(u32("study data length"), "study data");
      regexSpecs.push({ regex, mode, context, file, line });
    }
    const nc = u32("child count");
    if (nc > (data.length - off) / 14) fail(`child count ${nc} exceeds the file`);
    for (let i = 0; i < nc; i++) node(depth + 1);
  };
  node(0);
  for (const s of [...regexSpecs, ...literalSpecs])
    if (/[\x80-\xff]/.test(s.regex)) fail(`non-ASCII regex ${JSON.stringify(s.regex)}`);
  // a stable sort: file order for the expressions, tree order for the literals after them
  regexSpecs.sort((a, b) => a.line - b.line);
  literalSpecs.forEach((s, i) => {
    s.line = i + 1;
  });
  return [...regexSpecs, ...literalSpecs];
}
