import { expect, it } from "vitest";
import { RepoFormatError } from "../src/errors.js";
import { parseRepoFile, readDnfVars, substituteVars } from "../src/yum-repos.js";

it("parses .repo files as dnf reads them", () => {
  const text = [
    "# comment",
    "[appstream]",
    "name=AppStream $releasever",
    // dnf's braced form, not a template literal.
    `baseurl=http://mirror/$contentdir/\${releasever}/AppStream/$basearch/os/`,
    "  http://backup/$releasever/",
    "gpgcheck=1",
    "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-x, file:///etc/pki/rpm-gpg/RPM-GPG-KEY-y",
    "priority=10",
    "module_hotfixes=true",
    "",
    "[off]",
    "enabled=0",
    "baseurl=file:///x",
  ].join("\n");
  const repos = parseRepoFile(text, "/etc/yum.repos.d/a.repo", {
    releasever: "9",
    basearch: "x86_64",
    contentdir: "centos",
  });
  expect(repos).toEqual([
    {
      id: "appstream",
      name: "AppStream 9",
      baseurls: ["http://mirror/centos/9/AppStream/x86_64/os/", "http://backup/9/"],
      mirrorlist: null,
      metalink: null,
      enabled: true,
      gpgcheck: true,
      gpgkeys: ["file:///etc/pki/rpm-gpg/RPM-GPG-KEY-x", "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-y"],
      priority: 10,
      cost: 1000,
      moduleHotfixes: true,
      file: "/etc/yum.repos.d/a.repo",
    },
    expect.objectContaining({ id: "off", enabled: false, gpgcheck: false }),
  ]);
  expect(substituteVars("$unknown/$basearch", { basearch: "aarch64" })).toBe("$unknown/aarch64");
  expect(() => parseRepoFile("baseurl=x\n", "f.repo", {})).toThrow(RepoFormatError);
});

it("reads /etc/dnf/vars, the given variables winning", async () => {
  const files: Record<string, string> = {
    "/etc/dnf/vars/contentdir": "stream\n",
    "/etc/dnf/vars/releasever": "8\n",
  };
  const g = {
    readFile: async (p: string) => (p in files ? new TextEncoder().encode(files[p]) : null),
    readdir: async (p: string) => (p === "/etc/dnf/vars" ? ["contentdir", "releasever"] : null),
  };
  expect(await readDnfVars(g, { releasever: "9" })).toEqual({ contentdir: "stream", releasever: "9" });
});
