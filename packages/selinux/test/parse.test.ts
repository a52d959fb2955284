import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  analyzeSpec,
  compileSpecRegex,
  FileContexts,
  firstComponentBucket,
  LazySpecText,
  loadGuestPolicy,
  parseFcontextBin,
  parseFileContexts,
  parseSelinuxConfig,
  parseSubs,
  S_IFDIR,
  S_IFREG,
  SelinuxPolicyError,
  SelinuxRegexError,
  specLiteral,
  specMeta,
  specPrefix,
  specStem,
  substitutePath,
} from "../src/index.js";

describe("file_contexts text", () => {
  it("reads specs, file types, <<none>>, comments and line numbers", () => {
    const specs = parseFileContexts(
      "# c\n\n/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n  /tmp/.*   <<none>>\n/x -d u:r:t:s0 extra\n",
      "fc",
    );
    expect(specs).toEqual([
      { regex: "/etc(/.*)?", mode: 0, context: "system_u:object_r:etc_t:s0", file: "fc", line: 3 },
      { regex: "/tmp/.*", mode: 0, context: null, file: "fc", line: 4 },
      { regex: "/x", mode: S_IFDIR, context: "u:r:t:s0", file: "fc", line: 5 },
    ]);
  });
  it("the plain-ASCII reading equals the byte-by-byte one; odd file types are typed errors", () => {
    const debian = "/etc/selinux/default/contexts/files/file_contexts";
    let text =
      "# c\n\n/etc(/.*)?\tsystem_u:object_r:etc_t:s0\r\n  /tmp/.*   <<none>>\n/x -d u:r:t:s0 extra\n";
    try {
      text += readFileSync(debian, "latin1");
    } catch {
      // no refpolicy on this host: the hand-written lines only
    }
    // a NUL (here on a last line of its own) sends the text through the byte-by-byte reader
    expect(parseFileContexts(text, "fc")).toEqual(parseFileContexts(`${text}\0`, "fc"));
    for (const t of ["constructor", "__proto__", "toString"])
      expect(() => parseFileContexts(`/a ${t} u:r:t:s0\n`, "FC")).toThrow(/FC: line 1: invalid file type/);
  });
  it("typed errors name the file and line", () => {
    expect(() => parseFileContexts("/a u:r:t\n/b\n", "FC")).toThrow(/FC: line 2: missing fields/);
    expect(() => parseFileContexts("/a -x u:r:t\n", "FC")).toThrow(SelinuxPolicyError);
    expect(() => parseFileContexts("/ä u:r:t\n", "FC")).toThrow(/line 1: non-ASCII/);
  });
});

describe("expressions", () => {
  it("are anchored on the whole path and follow PCRE's DOTALL/dollar rules", () => {
    const re = (s: string) => compileSpecRegex(s, "f", 1);
    expect(re("/etc(/.*)?").test("/etc")).toBe(true);
    expect(re("/etc(/.*)?").test("/etcx")).toBe(false);
    expect(re("/a.*").test("/a\nb")).toBe(true); // DOTALL
    expect(re("/a").test("/a\n")).toBe(true); // $ before a final newline
    // ^/a | /b$: libselinux does not group (matchpathcon agrees: /ab and /x/b match)
    expect(re("/a|/b").test("/ab")).toBe(true);
    expect(re("/a|/b").test("/x/b")).toBe(true);
    expect(re("/x[[:digit:]]+").test("/x12")).toBe(true);
    expect(re("/s\\s").test("/s\xa0")).toBe(false); // \s is ASCII only
    expect(re("/[^/]*\\.conf").test("/a.conf")).toBe(true);
  });
  it("refuses what has no faithful translation, naming file and line", () => {
    expect(() => compileSpecRegex("/(?i)abc", "FC", 7)).toThrow(SelinuxRegexError);
    expect(() => compileSpecRegex("/(a)\\1", "FC", 7)).toThrow(/FC: line 7: .*escape \\1/);
    expect(() => compileSpecRegex("/\\p{L}", "FC", 7)).toThrow(SelinuxRegexError);
    expect(() => compileSpecRegex("/a(b", "FC", 7)).toThrow(/missing \)/);
  });
});

describe("precedence", () => {
  it("exact paths beat expressions; later lines beat earlier; file types filter", () => {
    const fc = new FileContexts({
      specs: parseFileContexts(
        [
          "/etc/passwd -- u:r:exact:s0",
          "/etc(/.*)? u:r:etc:s0",
          "/etc/p.* -- u:r:later:s0",
          "/etc/p.* -d u:r:dir:s0",
        ].join("\n"),
        "fc",
      ),
      local: parseFileContexts("/etc/pam\\.d(/.*)? u:r:local:s0\n", "fc.local"),
    });
    expect(fc.lookup("/etc/passwd", S_IFREG)).toBe("u:r:exact:s0");
    expect(fc.lookup("/etc/passwd", S_IFDIR)).toBe("u:r:dir:s0");
    expect(fc.lookup("/etc/pam.d/x", S_IFREG)).toBe("u:r:local:s0");
    expect(fc.lookup("/etc/profile", S_IFREG)).toBe("u:r:later:s0");
    expect(fc.lookup("/usr", S_IFDIR)).toBeNull();
  });
  it("equivalences: later line first, local then distribution", () => {
    const local = parseSubs("/a /b\n# x\n/web /var/www\n");
    const dist = parseSubs("/var/www /srv/www\n/lib64 /usr/lib\n/root /\n");
    expect(substitutePath(local, dist, "/web/x")).toBe("/srv/www/x");
    expect(substitutePath(local, dist, "/lib64/libc.so")).toBe("/usr/lib/libc.so");
    expect(substitutePath(local, dist, "/lib645")).toBe("/lib645");
    expect(substitutePath(local, dist, "/root/x")).toBe("/x");
  });
});

describe("candidate prefixes", () => {
  it("are literal text every match starts with", () => {
    const cases: Array<[string, string]> = [
      ["/usr/lib(/.*)?", "/usr/lib"],
      ["/usr/libx?/y", "/usr/lib"],
      ["/opt/.*\\.so", "/opt/"],
      ["/a\\.b*", "/a."],
      ["/var/run\\d+", "/var/run"],
      ["/x{2}y", "/"],
      ["/usr/bin/a|/usr/sbin/a", ""],
      ["/usr/(bin|sbin)/a", "/usr/"],
      ["/a(b)|/c", ""],
      ["/a[|]b|/c", ""],
      ["/a[]|]b", "/a"],
      ["/a[[:alpha:]|]b", "/a"],
      ["^/a", ""],
      ["/a+b", "/a"],
    ];
    for (const [re, prefix] of cases) expect([re, specPrefix(re)]).toEqual([re, prefix]);
  });
  it("analyzeSpec agrees with specMeta/specStem/specPrefix/specLiteral", () => {
    const regexes = ["/a\\.b", "/a\\d", "/x\\.y(/.*)?", "/usr/lib(64)?/z", "/a|/b", "/q\\+r*", "/", "/etc"];
    const debian = "/etc/selinux/default/contexts/files/file_contexts";
    try {
      for (const s of parseFileContexts(readFileSync(debian), debian)) regexes.push(s.regex);
    } catch {
      // no refpolicy on this host: the hand-written cases only
    }
    for (const r of regexes) {
      const meta = specMeta(r).hasMeta;
      expect([r, analyzeSpec(r)]).toEqual([
        r,
        {
          hasMeta: meta,
          stem: specStem(r),
          prefix: meta ? specPrefix(r) : "",
          literal: meta ? undefined : specLiteral(r),
        },
      ]);
    }
  });
  it("do not change which spec wins", () => {
    const specs = parseFileContexts(
      [
        "/usr/bin/a|/usr/sbin/a -- u:r:alt_t:s0",
        "/usr/(.*/)?lib(/.*)? u:r:lib_t:s0",
        "/usr/lib/ab? u:r:x_t:s0",
        "/usr/lib/python3(/.*)? u:r:py_t:s0",
      ].join("\n"),
      "fc",
    );
    const fc = new FileContexts({ specs });
    expect(fc.lookup("/usr/sbin/a", S_IFREG)).toBe("u:r:alt_t:s0");
    expect(fc.lookup("/usr/lib/python3/m.py", S_IFREG)).toBe("u:r:py_t:s0");
    expect(fc.lookup("/usr/lib/a", S_IFDIR)).toBe("u:r:x_t:s0");
    expect(fc.lookup("/usr/lib/", S_IFDIR)).toBe("u:r:lib_t:s0");
    expect(fc.lookup("/usr/share/lib/z", S_IFREG)).toBe("u:r:lib_t:s0");
    expect(fc.lookup("/etc/z", S_IFREG)).toBe(null);
  });
});

describe("lazy indexing", () => {
  it("buckets specs by what their first path component must be", () => {
    const cases: Array<[string, string]> = [
      ["/usr/lib(/.*)?", "=usr<lib"],
      ["/usr/lib/x", "=usr/lib"],
      ["/usr/lib", "=usr/lib"],
      ["/usr/(.*/)?lib", "=usr*"],
      ["/usr/b?x", "=usr*"],
      ["/usr/bin?x", "=usr<bi"],
      ["/usr/?x", "<usr"],
      ["/usr/\\.x", "=usr*"],
      ["/opt", "=opt"],
      ["/", "="],
      ["/opt(/.*)?", "<opt"],
      ["/lib64?/x", "<lib6"],
      ["/lib{1,2}", "<li"],
      ["/etc\\.d/x", "<etc"],
      ["/a+b", "<a"],
      ["/.*", "*"],
      ["/(usr|opt)/x", "*"],
      ["/usr/bin/a|/opt/a", "*"],
      ["/a[(]b|/c", "*"],
      ["^/a", "*"],
      ["/x?", "*"],
    ];
    for (const [re, b] of cases) expect([re, firstComponentBucket(re)]).toEqual([re, b]);
  });
  it("answers as an index built up front, whatever order keys come in", () => {
    const specs = parseFileContexts(
      [
        "/.* u:r:default_t:s0",
        "/opt(/.*)? u:r:opt_t:s0",
        "/optional/x u:r:optx_t:s0",
        "/lib64?(/.*)? u:r:lib_t:s0",
        "/usr/bin/a|/opt/b -- u:r:alt_t:s0",
        "/o.t/c -d u:r:ot_t:s0",
        "/etc/a\\d u:r:odd_t:s0",
        "/etc u:r:etc_t:s0",
        "/etc/.* u:r:etcx_t:s0",
        "/usr/lib(64)?/x u:r:lx_t:s0",
        "/usr/(.*/)?bin/z u:r:bz_t:s0",
        "/usr/?q u:r:uq_t:s0",
        "/usr/local/bin u:r:lb_t:s0",
      ].join("\n"),
      "fc",
    );
    const keys = [
      "/opt/b",
      "/optional/x",
      "/lib6/y",
      "/lib/z",
      "/usr/bin/a",
      "/usr/x/opt/b",
      "/oat/c",
      "/etc/a1",
      "/etc",
      "/x",
      "/",
    ];
    const eager = new FileContexts({ specs }).compileAll();
    for (const order of [keys, [...keys].reverse()]) {
      const lazy = new FileContexts({ specs });
      for (const k of order)
        for (const m of [0, S_IFREG, S_IFDIR])
          expect([k, m, lazy.lookup(k, m)]).toEqual([k, m, eager.lookup(k, m)]);
    }
    // a top-level "|" unanchors the halves: "/opt/b$" matches any key of stem /usr ending so
    expect(eager.lookup("/usr/x/opt/b", S_IFREG)).toBe("u:r:alt_t:s0");
    expect(eager.lookup("/oat/c", S_IFDIR)).toBe("u:r:ot_t:s0");
    expect(eager.lookup("/etc/a1", S_IFREG)).toBe("u:r:odd_t:s0");
  });
});

describe("lazily read text", () => {
  it("finds a malformed line at load even where no lookup goes", () => {
    const good = "/opt(/.*)? u:r:opt_t:s0\n/usr/bin/x -- u:r:bin_t:s0\n";
    expect(() => new LazySpecText(`${good}/zzz/y\n`, "FC")).toThrow(/FC: line 3: missing fields/);
    expect(() => new LazySpecText(`${good}/zzz/y -q u:r:t:s0\n`, "FC")).toThrow(
      /FC: line 3: invalid file type/,
    );
    expect(() => new LazySpecText(`${good}# only a comment\n\n  \n`, "FC")).not.toThrow();
  });
  it("gives every spec with its line, as the full parse does", () => {
    const text = [
      "# c",
      "/opt(/.*)? u:r:opt_t:s0",
      "",
      "/.* u:r:default_t:s0",
      "/usr/bin/a|/opt/b -- u:r:alt_t:s0",
      "/o.t/c -d u:r:ot_t:s0",
      "  /etc\\.d u:r:x_t:s0",
      "/x? u:r:q_t:s0",
      "/ -d u:r:root_t:s0",
      "relative u:r:rel_t:s0",
    ].join("\n");
    const full = parseFileContexts(text, "fc");
    const lazy = new LazySpecText(text, "fc");
    const seen = new Map<number, unknown>();
    for (const c of ["o", "u", "e", "", "x", "r"]) for (const s of lazy.candidates(c)) seen.set(s.line, s);
    expect(
      [...seen.values()].sort((a, b) => (a as { line: number }).line - (b as { line: number }).line),
    ).toEqual(full);
    expect(lazy.all()).toEqual(full);
  });
  it("answers every refpolicy path as the full parse does", () => {
    const debian = "/etc/selinux/default/contexts/files/file_contexts";
    let data: Buffer;
    try {
      data = readFileSync(debian);
    } catch {
      return; // no refpolicy here: the oracle test covers it where it is installed
    }
    const eager = new FileContexts({ specs: parseFileContexts(data, debian) });
    const lazy = new FileContexts({ specs: new LazySpecText(data, debian) });
    const keys = parseFileContexts(data, debian).map((s) => s.regex.replace(/\(.*$|[.^$?*+|[{\\].*$/, "x"));
    for (const k of keys)
      for (const m of [0, S_IFREG, S_IFDIR]) expect([k, lazy.lookup(k, m)]).toEqual([k, eager.lookup(k, m)]);
  });
});

describe("loaded policies", () => {
  it("are reused by content, never across a changed file", async () => {
    const files: Record<string, string> = {
      "/etc/selinux/config": "SELINUX=enforcing\nSELINUXTYPE=t\n",
      "/etc/selinux/t/contexts/files/file_contexts": "/a(/.*)? u:r:a_t:s0\n",
    };
    const reader = {
      readFile: async (p: string) => {
        if (files[p] === undefined) throw Object.assign(new Error(p), { code: "ENOENT" });
        return new TextEncoder().encode(files[p]);
      },
    };
    const one = await loadGuestPolicy(reader);
    const two = await loadGuestPolicy(reader);
    expect(two?.contexts).toBe(one?.contexts);
    files["/etc/selinux/t/contexts/files/file_contexts"] = "/a(/.*)? u:r:b_t:s0\n";
    const three = await loadGuestPolicy(reader);
    expect(three?.contexts).not.toBe(one?.contexts);
    expect(three?.contexts.lookup("/a/x")).toBe("u:r:b_t:s0");
    files["/etc/selinux/t/contexts/files/file_contexts.subs"] = "/b /a\n";
    const four = await loadGuestPolicy(reader);
    expect(four?.contexts).not.toBe(three?.contexts);
    expect(four?.contexts.lookup("/b/x")).toBe("u:r:b_t:s0");
  });
});

describe("config", () => {
  it("reads SELINUX and SELINUXTYPE as libselinux does", () => {
    expect(parseSelinuxConfig("# x\nSELINUX=enforcing\nSELINUXTYPE=targeted # c\n")).toEqual({
      mode: "enforcing",
      type: "targeted",
    });
    expect(parseSelinuxConfig("selinux=Disabled\n").mode).toBe("disabled");
  });
});

describe("compiled file_contexts.bin version 6", () => {
  it("every truncation and a damaged count give typed errors", () => {
    const b = readFileSync(new URL("./fixtures/v6/file_contexts.bin", import.meta.url));
    expect(parseFcontextBin(b, "v6.bin").length).toBeGreaterThan(50);
    for (let cut = 4; cut < b.length; cut += 7)
      expect(() => parseFcontextBin(b.subarray(0, cut), "v6.bin")).toThrow(SelinuxPolicyError);
    const bad = Buffer.from(b);
    bad.writeUInt32BE(0xfffffff0, bad.indexOf(Buffer.from("8-8-el")) + 6 + 8); // context count
    expect(() => parseFcontextBin(bad, "v6.bin")).toThrow(/context count/);
  });
});

describe("compiled file_contexts.bin", () => {
  const bin = (() => {
    try {
      return readFileSync("/etc/selinux/default/contexts/files/file_contexts.bin");
    } catch {
      return undefined;
    }
  })();
  it("damage gives typed errors with offsets, never a RangeError", () => {
    const b = bin ?? Buffer.from([0x8a, 0xff, 0x7c, 0xf9, 5, 0, 0, 0]);
    for (const cut of [4, 8, 20, 100, 5000, Math.floor(b.length / 2)]) {
      if (cut >= b.length) continue;
      expect(() => parseFcontextBin(b.subarray(0, cut), "x.bin")).toThrow(SelinuxPolicyError);
    }
    const v6 = Buffer.from(b);
    v6.writeUInt32LE(6, 4);
    expect(() => parseFcontextBin(v6, "x.bin")).toThrow(/version 6/);
    if (bin) {
      // a huge spec count is refused before any allocation
      const huge = Buffer.from(bin.subarray(0, 64));
      expect(() => parseFcontextBin(huge, "x.bin")).toThrow(SelinuxPolicyError);
    }
  });
});
