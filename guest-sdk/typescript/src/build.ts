#!/usr/bin/env node
/**
 * Build a TypeScript policy project into a tiergate component.
 *
 *     tiergate-policy-build [PROJECT] [-o OUT.wasm]
 *
 * PROJECT (default: the current directory) holds a `package.json` with the
 * policy's `name` and `version` and `"tiergate": {"policy": "src/policy.ts"}`,
 * a module whose default export is the policy (`definePolicy(...)`). The
 * module and what it imports are bundled into one ES module, which
 * componentize-js builds against the contract this SDK carries with every
 * WASI feature but the clocks turned off: the component imports the
 * contract's context and the clocks, which the host serves frozen, so it has
 * no randomness (`Math.random` is seeded when the component is built), file
 * or network, and time does not pass.
 */

import { realpathSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const WORLD = "tier-policy";

/** What StarlingMonkey needs beyond the host's defaults (16 MiB, 2,000,000
 * fuel and 500 µs of CPU a call), which the host grants up to its maxima.
 * seed-tiers starts in 9.1 MiB, uses about 5,000,000 fuel a decision and
 * 2.5 to 3 ms of CPU in a fresh sandbox (up to 13 ms when 16 callers share
 * 2 cores): these leave a policy room to grow, and keep its ordinary
 * decisions out of its tenant's CPU budget, which is for calls that loop. A project may ask for other amounts in
 * `"tiergate": {"needs": {...}}`. */
const NEEDS: Readonly<Record<string, number>> = { memory_bytes: 32 * 1024 * 1024, fuel: 25_000_000, cpu_per_call_us: 12_000 };
const SDK_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

class BuildError extends Error {}

interface Project {
  root: string;
  name: string;
  version: string;
  entry: string;
  needs: Record<string, number>;
}

async function readProject(root: string): Promise<Project> {
  const manifest = join(root, "package.json");
  let doc: { name?: unknown; version?: unknown; tiergate?: { policy?: unknown; needs?: Record<string, unknown> } };
  try {
    doc = JSON.parse(await readFile(manifest, "utf8"));
  } catch (e) {
    throw new BuildError(`${manifest}: ${(e as Error).message}: a TypeScript policy project needs one`);
  }
  const name = typeof doc.name === "string" ? doc.name.replace(/^@[^/]+\//, "") : undefined;
  if (name === undefined || !/^[a-z0-9][a-z0-9._-]*$/.test(name)) {
    throw new BuildError(`${manifest}: "name" must be a lower-case policy name`);
  }
  if (typeof doc.version !== "string" || doc.version === "") throw new BuildError(`${manifest}: "version" is missing`);
  if (typeof doc.tiergate?.policy !== "string") {
    throw new BuildError(`${manifest}: set "tiergate": {"policy": "src/policy.ts"}, the module whose default export is the policy`);
  }
  const needs = { ...NEEDS };
  for (const [key, value] of Object.entries(doc.tiergate.needs ?? {})) {
    if (!(key in NEEDS)) throw new BuildError(`${manifest}: "tiergate.needs" has no "${key}": use ${Object.keys(NEEDS).join(", ")}`);
    if (!Number.isSafeInteger(value) || (value as number) <= 0) {
      throw new BuildError(`${manifest}: "tiergate.needs.${key}" must be a whole number above 0`);
    }
    needs[key] = value as number;
  }
  return { root, name, version: doc.version, entry: resolve(root, doc.tiergate.policy), needs };
}

async function sdkVersion(): Promise<string> {
  const doc = JSON.parse(await readFile(join(SDK_ROOT, "package.json"), "utf8"));
  return `${doc.name} ${doc.version}`;
}

/** The installed version of `pkg`: its package.json, found upward from its entry. */
async function toolVersion(pkg: string): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.resolve(pkg)));
  for (;;) {
    try {
      const doc = JSON.parse(await readFile(join(dir, "package.json"), "utf8"));
      if (doc.name === pkg) return doc.version;
    } catch {
      // not this directory
    }
    const up = dirname(dir);
    if (up === dir) return "unknown";
    dir = up;
  }
}

/** `bytes` with a top-level custom section `name` holding `payload`. */
export function withCustomSection(bytes: Uint8Array, name: string, payload: string): Uint8Array {
  const enc = new TextEncoder();
  const nameBytes = enc.encode(name);
  const body = [...leb128(nameBytes.length), ...nameBytes, ...enc.encode(payload)];
  return new Uint8Array([...bytes, 0, ...leb128(body.length), ...body]);
}

function leb128(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export async function build(project: Project, out: string): Promise<string> {
  let rolldown: typeof import("rolldown").rolldown;
  let componentize: typeof import("@bytecodealliance/componentize-js").componentize;
  try {
    ({ rolldown } = await import("rolldown"));
    ({ componentize } = await import("@bytecodealliance/componentize-js"));
  } catch (e) {
    throw new BuildError(`the build tools are not installed (${(e as Error).message}): run \`npm ci\` in ${SDK_ROOT}`);
  }
  const scratch = await mkdtemp(join(tmpdir(), "tiergate-build-"));
  try {
    const entry = join(scratch, "entry.js");
    await writeFile(
      entry,
      [
        "// Written by tiergate-policy-build: exports the policy as the contract's `policy` interface.",
        `import definition from ${JSON.stringify(project.entry)};`,
        `import { exportPolicy } from ${JSON.stringify(join(SDK_ROOT, "dist", "guest.js"))};`,
        `export const policy = exportPolicy(definition, ${JSON.stringify(project.name)}, ${JSON.stringify(project.version)});`,
        "",
      ].join("\n"),
    );
    const bundle = await rolldown({
      input: entry,
      cwd: project.root,
      external: [/^tiergate:policy\//],
      logLevel: "warn",
      resolve: { modules: [join(project.root, "node_modules"), join(SDK_ROOT, "node_modules")] },
    });
    const bundled = join(scratch, "policy.js");
    await bundle.write({ file: bundled, format: "esm" });
    await bundle.close();
    let component: Uint8Array;
    try {
      ({ component } = await componentize({
        sourcePath: bundled,
        witPath: join(SDK_ROOT, "wit", "v0.1.0"),
        worldName: WORLD,
        // The clocks stay: the host serves them frozen, so a policy reading the
        // time sees the same instant every call rather than trapping.
        disableFeatures: ["stdio", "random", "http", "fetch-event"],
      }));
    } catch (e) {
      throw new BuildError(`componentize-js could not build ${project.name}: ${(e as Error).message}`);
    }
    const about = JSON.stringify({
      language: "typescript",
      toolchain: `componentize-js ${await toolVersion("@bytecodealliance/componentize-js")}`,
      sdk: await sdkVersion(),
      needs: project.needs,
    });
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, withCustomSection(component, "tiergate:build", about));
    return out;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function main(args: string[]): Promise<number> {
  let project = ".";
  let out: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-o" || args[i] === "--output") out = args[++i];
    else if (args[i] === "-h" || args[i] === "--help") {
      console.log("usage: tiergate-policy-build [PROJECT] [-o OUT.wasm]");
      return 0;
    } else project = args[i];
  }
  try {
    const p = await readProject(resolve(project));
    const target = resolve(out ?? join(p.root, "target", `${p.name}.wasm`));
    console.error(`building ${p.name} ${p.version} with componentize-js`);
    console.log(await build(p, target));
    return 0;
  } catch (e) {
    if (e instanceof BuildError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

// Run as the `tiergate-policy-build` command (npm links it through a symlink).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
