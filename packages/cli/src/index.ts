export * from "./customize/index.js";
export * from "./elements/index.js";
export * from "./guest/index.js";
export * from "./image/index.js";
