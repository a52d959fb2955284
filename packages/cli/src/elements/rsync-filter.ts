/** rsync's -C (--cvs-exclude) default patterns, applied to each path component's name. */
const CVS_EXCLUDE = [
  "RCS",
  "SCCS",
  "CVS",
  "CVS.adm",
  "RCSLOG",
  "cvslog.*",
  "tags",
  "TAGS",
  ".make.state",
  ".nse_depinfo",
  "*~",
  "#*",
  ".#*",
  ",*",
  "_$*",
  "*$",
  "*.old",
  "*.bak",
  "*.BAK",
  "*.orig",
  "*.rej",
  ".del-*",
  "*.a",
  "*.olb",
  "*.o",
  "*.obj",
  "*.so",
  "*.exe",
  "*.Z",
  "*.elc",
  "*.ln",
  "core",
  ".svn",
  ".git",
  ".hg",
  ".bzr",
];

const CVS_RE = CVS_EXCLUDE.map(
  (g) =>
    new RegExp(
      `^${g
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, ".*")
        .replace(/\?/g, ".")}$`,
    ),
);

/** Whether `rsync -C` skips a path (any of its components matching). */
export function cvsExcluded(rel: string): boolean {
  return rel.split("/").some((name) => CVS_RE.some((re) => re.test(name)));
}
