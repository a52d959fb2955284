/**
 * Our labels against libselinux's: matchpathcon (selinux-utils) over the same file_contexts, for
 * every path of a realistic tree (this host's /usr, /etc, /var, …) and paths generated from every
 * spec, under each file type. Policies: Debian's refpolicy (selinux-policy-default; its text
 * file_contexts and its compiled .bin) and a RHEL-targeted-style fixture with equivalences,
 * homedirs and local customisations.
 */
import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeWithTools, oraclesRequired } from "@imgpatch/testkit";
import { afterAll, expect, it } from "vitest";
import {
  FileContexts,
  fileTypeFlag,
  LazySpecText,
  loadGuestPolicy,
  loadSpecFile,
  parseFcontextBin,
  parseFileContexts,
  parseSubs,
  S_IFREG,
} from "../src/index.js";
import { hostReader, MODES, matchpathcon, samplesFor } from "./oracle-helpers.js";

const DEBIAN = "/etc/selinux/default/contexts/files/file_contexts";
const FIXTURE_ROOT = join(import.meta.dirname, "fixtures/rhel-like");
const FIXTURE_FC = join(FIXTURE_ROOT, "etc/selinux/targeted/contexts/files/file_contexts");

const tmp = mkdtempSync(join(tmpdir(), "imgpatch-selinux-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** `find` over the host, once per test file and without blocking the worker (vitest's 60 s RPC). */
let hostFind: Promise<string> | undefined;

/** Paths of this host's tree (every k-th, with its type), a realistic guest layout. */
async function hostTree(limit: number): Promise<Array<{ path: string; mode: number }>> {
  hostFind ??= new Promise((resolve, reject) =>
    execFile(
      "find",
      ["/usr", "/etc", "/var", "/opt", "/root", "/home", "/boot", "/srv", "-xdev", "-printf", "%y %p\\0"],
      { maxBuffer: 1 << 28, encoding: "latin1" },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
  const out = await hostFind;
  const all = out.split("\0").filter((l) => l.length > 2 && !/[\n\t]/.test(l));
  const step = Math.max(1, Math.floor(all.length / limit));
  const types: Record<string, number> = Object.fromEntries(MODES.map(([m, f]) => [f, m]));
  const picked: Array<{ path: string; mode: number }> = [];
  for (let i = 0; i < all.length; i += step) {
    const t = all[i][0];
    picked.push({ path: Buffer.from(all[i].slice(2), "latin1").toString("utf8"), mode: types[t] ?? 0 });
  }
  return picked.filter((p) => p.mode !== 0);
}

/** Extra keys exercising the key cleaning and equivalences. */
const EDGE_PATHS = [
  "/",
  "/etc/",
  "//etc//passwd",
  "/usr/lib64/libc.so.6",
  "/lib64/ld-linux-x86-64.so.2",
  "/lib/systemd/systemd",
  "/var/run/sshd.pid",
  "/run/lock/subsys/x",
  "/var/roothome/.ssh/authorized_keys",
  "/var/home/alice/.bashrc",
  "/web/index.html",
  "/data/home/bob/.ssh",
  "/srv/adminhome/.ssh/id_rsa",
  "/home/cloud-user/heat/x",
  "/home/cloud-user/.ssh/authorized_keys",
  "/etc/systemd/system/heat.service",
  "/usr/lib/systemd/system/heat.service",
  "/opt/heat\\x2dagents/bin",
  "/opt/heat-agents/bin",
  "/usr/share/x11/a",
  "/usr/share/w12.ab",
  "/.autorelabel",
  "/lost+found",
  "/etc/rc.d/init.d/network",
  "/etc/rc.d/rc.local",
  "/usr/lib/ld-2.28.so",
  "/usr/local/sbin/tool",
  "/tmp/x",
  "/home",
  "/x",
  "/home/ümlaut/.ssh",
  "/etc/ssh/ssh_host_ed25519_key.pub",
];

/** Let the worker answer vitest between long synchronous stretches (its RPC times out after 60 s). */
const breathe = () => new Promise<void>((r) => setImmediate(r));

async function compare(
  name: string,
  ours: FileContexts,
  fcForOracle: string,
  specsForSamples: readonly {
    regex: string;
    mode: number;
    context: string | null;
    file: string;
    line: number;
  }[],
): Promise<number> {
  const tree = await hostTree(6000);
  const generated = new Set<string>(EDGE_PATHS);
  for (const s of specsForSamples) for (const p of samplesFor(s)) generated.add(p);
  let compared = 0;
  const mismatches: string[] = [];
  // the realistic tree, each path with its own type
  for (const [mode, flag] of MODES) {
    const paths = tree.filter((p) => p.mode === mode).map((p) => p.path);
    if (paths.length === 0) continue;
    const theirs = await matchpathcon(fcForOracle, flag, paths);
    for (const [i, p] of paths.entries()) {
      if (i % 500 === 0) await breathe();
      const mine = ours.lookup(p, mode) ?? "<<none>>";
      compared++;
      if (mine !== theirs[i]) mismatches.push(`${flag} ${p}: ours ${mine}, matchpathcon ${theirs[i]}`);
    }
  }
  // generated paths under every file type
  const gen = [...generated].filter((p) => !p.includes("\n"));
  for (const [mode, flag] of MODES) {
    const theirs = await matchpathcon(fcForOracle, flag, gen);
    for (const [i, p] of gen.entries()) {
      if (i % 500 === 0) await breathe();
      const m = ours.match(p, mode);
      const mine = m?.context ?? "<<none>>";
      compared++;
      if (mine !== theirs[i])
        mismatches.push(
          `${flag} ${p}: ours ${mine} (${m ? `${m.spec.file}:${m.spec.line} ${m.spec.regex} ${fileTypeFlag(m.spec.mode)}` : "no spec"}), matchpathcon ${theirs[i]}`,
        );
    }
  }
  expect(mismatches.slice(0, 20), `${name}: ${mismatches.length} of ${compared} differ`).toEqual([]);
  return compared;
}

describeWithTools(["matchpathcon"], "labels agree with matchpathcon", () => {
  const haveDebian = existsSync(DEBIAN);
  if (!haveDebian && oraclesRequired())
    it("has selinux-policy-default installed", () => {
      throw new Error(
        `${DEBIAN} missing: apt-get install selinux-policy-default (IMGPATCH_ORACLES=required)`,
      );
    });

  it.skipIf(!haveDebian)("Debian refpolicy, text file_contexts (+ homedirs, subs_dist)", async () => {
    const dir = join(tmp, "debian-text");
    execFileSync("mkdir", ["-p", dir]);
    for (const suffix of ["", ".homedirs", ".subs_dist"])
      if (existsSync(DEBIAN + suffix)) copyFileSync(DEBIAN + suffix, join(dir, `file_contexts${suffix}`));
    const fc = join(dir, "file_contexts");
    const specs = parseFileContexts(readFileSync(fc), fc);
    const homedirs = parseFileContexts(readFileSync(`${fc}.homedirs`), `${fc}.homedirs`);
    expect(specs.length).toBeGreaterThan(4000);
    // read and indexed lazily, as the CLI reads a guest's text policy (the .bin case below
    // compiles everything up front)
    const ours = new FileContexts({
      specs: new LazySpecText(readFileSync(fc), fc),
      homedirs: new LazySpecText(readFileSync(`${fc}.homedirs`), `${fc}.homedirs`),
      distSubs: parseSubs(readFileSync(`${fc}.subs_dist`)),
    });
    const n = await compare("debian text", ours, fc, [...specs, ...homedirs]);
    expect(n).toBeGreaterThan(30_000);
  });

  it.skipIf(!haveDebian)(
    "Debian refpolicy, compiled file_contexts.bin chosen as libselinux chooses",
    async () => {
      // the installed directory has both forms; libselinux (and our loader) pick the .bin
      const loaded = await loadSpecFile(hostReader("/"), DEBIAN);
      expect(loaded?.file).toBe(`${DEBIAN}.bin`);
      const text = parseFileContexts(readFileSync(DEBIAN), DEBIAN);
      const bin = parseFcontextBin(readFileSync(`${DEBIAN}.bin`), `${DEBIAN}.bin`);
      expect(bin.length).toBe(text.length);
      const key = (s: { regex: string; mode: number; context: string | null }) =>
        `${s.regex} ${s.mode} ${s.context}`;
      expect(bin.map(key).sort()).toEqual(text.map(key).sort());
      const homedirs = await loadSpecFile(hostReader("/"), `${DEBIAN}.homedirs`);
      const ours = new FileContexts({
        specs: bin,
        homedirs: homedirs?.specs,
        distSubs: parseSubs(readFileSync(`${DEBIAN}.subs_dist`)),
      }).compileAll();
      await compare("debian bin", ours, DEBIAN, bin.slice(0, 600));
    },
  );

  it("RHEL-targeted-style fixture compiled to the version 6 tree layout (libselinux ≥ 3.8)", async () => {
    const v6 = join(import.meta.dirname, "fixtures/v6/file_contexts.bin");
    const specs = parseFcontextBin(readFileSync(v6), v6);
    const text = parseFileContexts(readFileSync(FIXTURE_FC), FIXTURE_FC);
    expect(specs.length).toBe(text.length);
    const extra = (s: string) => parseFileContexts(readFileSync(FIXTURE_FC + s), FIXTURE_FC + s);
    const ours = new FileContexts({
      specs,
      homedirs: extra(".homedirs"),
      local: extra(".local"),
      distSubs: parseSubs(readFileSync(`${FIXTURE_FC}.subs_dist`)),
      subs: parseSubs(readFileSync(`${FIXTURE_FC}.subs`)),
    });
    await compare("rhel-like v6", ours, FIXTURE_FC, [...text, ...extra(".homedirs"), ...extra(".local")]);
  });

  it("a top-level | unanchors both halves (libselinux searches ^A|B$ unanchored)", async () => {
    const fc = join(tmp, "alternation_fc");
    const text = [
      "/.* system_u:object_r:default_t:s0",
      "/usr/bin/a|/opt/b -- system_u:object_r:bin_t:s0",
      "/usr/lib/x -- system_u:object_r:lib_t:s0",
    ].join("\n");
    writeFileSync(fc, `${text}\n`);
    const keys = ["/usr/x/opt/b", "/usr/bin/a", "/usr/bin/ab", "/opt/b", "/usr/lib/x", "/usr/opt/b/c"];
    const theirs = await matchpathcon(fc, "file", keys);
    for (const compiled of [false, true]) {
      const ours = new FileContexts({ specs: parseFileContexts(text, fc) });
      if (compiled) ours.compileAll();
      expect(keys.map((k) => ours.lookup(k, S_IFREG) ?? "<<none>>")).toEqual(theirs);
    }
    expect(theirs[0]).toBe("system_u:object_r:bin_t:s0");
  });

  it("RHEL-targeted-style fixture: equivalences, homedirs, local, <<none>>, file types", async () => {
    const policy = await loadGuestPolicy(hostReader(FIXTURE_ROOT));
    expect(policy?.config).toEqual({ mode: "enforcing", type: "targeted" });
    expect(policy?.files.map((f) => f.replace(/^.*\//, ""))).toEqual([
      "file_contexts",
      "file_contexts.homedirs",
      "file_contexts.local",
      "file_contexts.subs_dist",
      "file_contexts.subs",
    ]);
    const all = ["", ".homedirs", ".local"].flatMap((s) =>
      parseFileContexts(readFileSync(FIXTURE_FC + s), FIXTURE_FC + s),
    );
    const n = await compare("rhel-like", policy!.contexts, FIXTURE_FC, all);
    expect(n).toBeGreaterThan(5000);
  });
});
