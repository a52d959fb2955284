// Resolve hook for spawned test processes: @imgpatch/* → the TypeScript sources (like vitest's
// aliases), so end-to-end tests of the real bin need no build step. tsx (registered first) compiles.
const PKGS = new Set(["disk", "qcow2", "ext4", "rpm-inject", "testkit"]);
export async function resolve(specifier, context, next) {
  const m = /^@imgpatch\/([a-z0-9-]+)$/.exec(specifier);
  if (m && PKGS.has(m[1]))
    return next(new URL(`../../../${m[1]}/src/index.ts`, import.meta.url).href, context);
  return next(specifier, context);
}
