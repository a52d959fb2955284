export * from "./chunk-reader.js";
export * from "./decompress.js";
export * from "./errors.js";
export * from "./openpgp.js";
export * from "./pgp-verify.js";
export * from "./xz-check.js";
