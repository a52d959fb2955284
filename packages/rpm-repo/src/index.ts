export * from "./dep.js";
export * from "./errors.js";
export * from "./filelists.js";
export * from "./package-meta.js";
export * from "./primary.js";
export * from "./repo-source.js";
export * from "./repomd.js";
export * from "./rpmvercmp.js";
