// A live `credpool serve` for the tests: the binary named by CREDPOOL_BIN,
// its own data directory, listening on a free loopback port.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** The binary under test; a clear failure when it is not named. */
export function credpoolBin() {
  const bin = process.env.CREDPOOL_BIN;
  if (!bin) {
    throw new Error(
      'CREDPOOL_BIN is not set: point it at a built credpool binary, e.g. ' +
        'CREDPOOL_BIN=$PWD/target/debug/credpool (cargo build -p credpool), or run `cargo test -p credpool --test all -- clients_node::`',
    );
  }
  return bin;
}

/** A random-looking canary value, distinct per call. */
export function canary(label) {
  return `CANARY${label}${randomBytes(12).toString('hex')}`;
}

function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const k of ['CREDENTIAL_ENCRYPTION_KEY', 'CREDPOOL_ADDR', 'CREDPOOL_TOKEN', 'RUST_BACKTRACE']) delete env[k];
  return env;
}

/** Runs the CLI on `dir`; its stdout, or an error with the whole story. */
export function cli(dir, args) {
  const out = spawnSync(
    credpoolBin(),
    ['--data-dir', join(dir, 'data'), '--config', join(dir, 'credpool.toml'), ...args],
    { env: cleanEnv({ CREDPOOL_LOG: 'warn' }), encoding: 'utf8' },
  );
  if (out.error) throw new Error(`cannot run ${credpoolBin()}: ${out.error.message}`);
  if (out.status !== 0) throw new Error(`credpool ${args.join(' ')} exited ${out.status}:\n${out.stdout}\n${out.stderr}`);
  return out.stdout;
}

/**
 * Starts `credpool serve` on a fresh data directory with `config` as its
 * credpool.toml; answers its address, tokens of each role, its log text
 * and a stop function (which removes the directory).
 * @param {{config?: string, args?: string[]}} [options]
 */
export async function startServer(options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'credpool-node-'));
  writeFileSync(join(dir, 'credpool.toml'), options.config ?? '');
  cli(dir, ['init']);
  const server = await serve(dir, join(dir, 'credpool.toml'), options.args ?? []);
  const stop = server.stop;
  server.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return server;
}

/**
 * Starts `credpool serve` on `dir/data` (initialised) with the given
 * configuration file, after making a token of each role.
 * @param {string} dir
 * @param {string} configPath
 * @param {string[]} args
 */
export async function serve(dir, configPath, args = []) {
  const token = (role) => cli(dir, ['token', 'create', '--tenant', 'default', '--role', role]).trim();
  const tokens = { crawler: token('crawler'), operator: token('operator'), viewer: token('viewer'), admin: token('admin') };
  const logPath = join(dir, `serve-${Date.now()}.log`);
  const log = createWriteStream(logPath);
  await new Promise((resolve) => log.on('open', resolve));
  // A node that must advertise its URL names its own port.
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const child = spawn(
    credpoolBin(),
    ['--data-dir', join(dir, 'data'), '--config', configPath, 'serve', ...listen, '--interval-ms', '100', ...args],
    { env: cleanEnv({ CREDPOOL_LOG: 'debug' }), stdio: ['ignore', 'ignore', log] },
  );
  const started = await untilLine(child, () => readText(logPath), /serving on (http:\/\/\S+)/, 'credpool serve');
  const addr = started[1];
  const stop = async () => {
    await stopChild(child);
    log.end();
  };
  // SIGKILL: gone at once, nothing flushed or handed over.
  const kill = () => child.kill('SIGKILL');
  return { addr, tokens, dir, logText: () => readText(logPath), stop, kill };
}

function readText(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Waits for `pattern` in `text()`, failing if the child exits or 60 s pass. */
export async function untilLine(child, text, pattern, what) {
  let exited = child.exitCode !== null ? { code: child.exitCode } : null;
  child.once('exit', (code, signal) => {
    exited = { code, signal };
  });
  const until = Date.now() + 60_000;
  for (;;) {
    const m = pattern.exec(text());
    if (m) return m;
    if (exited) throw new Error(`${what} exited (${JSON.stringify(exited)}) before it was ready:\n${text()}`);
    if (Date.now() > until) throw new Error(`${what} was not ready in 60 s:\n${text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM, then SIGKILL after 20 s; resolves when the child has exited. */
export async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await done;
  clearTimeout(timer);
}
