export * from "./dep.js";
export * from "./errors.js";
export * from "./rpmvercmp.js";
