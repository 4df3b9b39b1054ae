// A real tiergate service for the live tests: `tiergate serve --demo` on a
// free port with a fresh data directory, and the demo tenant's keys.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface DemoKeys {
  agent: string;
  platform: string;
  approver: string;
  second_approver: string;
  auditor: string;
  admin: string;
}

export interface Tiergate {
  url: string;
  dataDir: string;
  keys: DemoKeys;
  /** The demo tenant's paying key (`x402-demo.key`): 0x and 64 hex digits. */
  payingKey: `0x${string}`;
  /** What the service printed, for failure messages. */
  output(): string;
  /** Calls the API with `key`; returns the status and the parsed body. */
  call(method: string, path: string, key: string, body?: unknown): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

/** The binary under test: `TIERGATE_BIN`, which `cargo xtask test` sets. */
export function tiergateBin(): string {
  const bin = process.env.TIERGATE_BIN;
  if (!bin) {
    throw new Error(
      "TIERGATE_BIN is not set: build tiergate (cargo build -p tiergate-cli --bin tiergate) and set " +
        "TIERGATE_BIN to target/debug/tiergate, or run `cargo xtask test`, which does both",
    );
  }
  return bin;
}

export async function startTiergate(): Promise<Tiergate> {
  const bin = tiergateBin();
  const dataDir = await mkdtemp(join(tmpdir(), "tiergate-x402-"));
  const child = spawn(bin, ["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  let printed = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (printed += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (printed += s));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tiergate did not start within 60 s:\n${printed}`)), 60_000);
      const look = () => {
        const m = /tiergate serving on (http:\/\/\S+)/.exec(printed);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      child.stdout!.on("data", look);
      child.once("error", (e) => reject(e));
      void exited.then((code) => reject(new Error(`tiergate exited (${code}) before serving:\n${printed}`)));
    });
  } catch (e) {
    child.kill("SIGKILL");
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  }

  let keys: DemoKeys;
  let payingKey: string;
  try {
    keys = JSON.parse(await readFile(join(dataDir, "demo-keys.json"), "utf8")) as DemoKeys;
    payingKey = (await readFile(join(dataDir, "x402-demo.key"), "utf8")).trim();
    if (!/^0x[0-9a-fA-F]{64}$/.test(payingKey)) {
      throw new Error(`x402-demo.key is not a 0x-prefixed 32-byte hex key (${payingKey.length} characters)`);
    }
  } catch (e) {
    await stopChild(child, exited);
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  }

  return {
    url,
    dataDir,
    keys,
    payingKey: payingKey as `0x${string}`,
    output: () => printed,
    async call(method, path, key, body) {
      const response = await fetch(url + path, {
        method,
        headers: {
          authorization: `Bearer ${key}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined };
    },
    async stop() {
      await stopChild(child, exited);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timeout = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), 10_000).unref());
  if ((await Promise.race([exited, timeout])) === "late") {
    child.kill("SIGKILL");
    await exited;
  }
}
