/** `--selinux-relabel`: the whole guest relabelled offline from its own policy (setfiles -F). */
import type { GuestFs } from "./guest-fs.js";
import { selinuxLabeler } from "./selinux-labeler.js";

export async function selinuxRelabel(fs: GuestFs): Promise<string[]> {
  const labeler = selinuxLabeler(fs);
  const report = labeler?.active ? await labeler.relabelAll() : undefined;
  if (!report) return ["SELinux: no active policy in the guest (disabled or absent); no labels written"];
  const lines = [
    `SELinux relabel (${labeler?.policy?.config.type}): ${report.visited} paths, ${report.changed} labels written, ${report.unlabelled} left unlabelled (<<none>>)`,
  ];
  if (report.skipped.length > 0)
    lines.push(`SELinux relabel skipped (not editable): ${report.skipped.join(", ")}`);
  return lines;
}
