export * from "./database.ts";
export * from "./db.ts";
export * from "./keys.ts";
export * from "./money.ts";
export * from "./secrets.ts";
export * from "./config.ts";
export * from "./provider_presets.ts";
