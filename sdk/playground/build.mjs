// Builds the playground and the desk into crates/natter-server/assets/playground: one minified
// script per page (app.js from main.ts, desk.js from desk.ts, each with @natter/client from
// ../typescript/src and socket.io-client from ../typescript/node_modules), plus index.html,
// desk.html and style.css as they are. The server embeds these files, so they are committed
// and `cargo build` needs no npm.
//
// `node build.mjs --check` builds into a temporary directory instead and fails if any file
// differs from the committed one (esbuild gives the same bytes for the same version and input).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const committed = path.join(repo, "crates/natter-server/assets/playground");
const sdkModules = path.resolve(here, "../typescript/node_modules/socket.io-client");
/** Each page's entry point and the script it becomes. */
const BUNDLES = [
  ["main.ts", "app.js"],
  ["desk.ts", "desk.js"],
];
const COPIED = ["index.html", "desk.html", "style.css"];
const FILES = [...COPIED, ...BUNDLES.map(([, out]) => out)];

async function build(outDir) {
  if (!existsSync(sdkModules)) {
    throw new Error(
      `socket.io-client is not installed in sdk/typescript (looked for ${sdkModules}); run \`npm ci\` in sdk/typescript first`,
    );
  }
  mkdirSync(outDir, { recursive: true });
  for (const [entry, out] of BUNDLES) await bundle(path.join(here, entry), path.join(outDir, out));
  for (const name of COPIED) {
    copyFileSync(path.join(here, name), path.join(outDir, name));
  }
}

async function bundle(entry, outfile) {
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    minify: true,
    format: "iife",
    platform: "browser",
    target: ["es2020"],
    // No source map: it would embed absolute paths, and the page is small enough to read.
    sourcemap: false,
    legalComments: "none",
    logLevel: "warning",
  });
  if (result.errors.length > 0) throw new Error(`esbuild failed on ${entry}`);
}

async function check() {
  const outDir = mkdtempSync(path.join(tmpdir(), "natter-playground-"));
  try {
    await build(outDir);
    const stale = FILES.filter((name) => {
      const target = path.join(committed, name);
      if (!existsSync(target)) return true;
      return !readFileSync(target).equals(readFileSync(path.join(outDir, name)));
    });
    if (stale.length > 0) {
      console.error(
        `The committed playground is stale: ${stale.map((n) => `crates/natter-server/assets/playground/${n}`).join(", ")} ` +
          "do not match a fresh build of sdk/playground and sdk/typescript/src.\n" +
          "Run `npm run build` in sdk/playground and commit the result.",
      );
      process.exitCode = 1;
      return;
    }
    console.log(`playground assets are up to date (${FILES.join(", ")})`);
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

try {
  if (process.argv.includes("--check")) {
    await check();
  } else {
    await build(committed);
    const sizes = BUNDLES.map(([, out]) => `${out} ${readFileSync(path.join(committed, out)).length} bytes`).join(", ");
    console.log(`wrote crates/natter-server/assets/playground/{${FILES.join(",")}} (${sizes})`);
  }
} catch (e) {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
}
