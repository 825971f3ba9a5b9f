/**
 * Commands in the host's network namespace: `hostNetns` (a path; `nsenter --net=`) when the agent
 * does not run in it (tests, benches), else the agent's own. Shared by the per-host bridge and
 * the overlay networks.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { run, type RunOptions, type RunResult } from '@swarmd/common/exec';

/**
 * nftables' binary by absolute path: under npm scripts PATH starts with node_modules/.bin, where
 * @vercel/nft (a dev tool) is also called `nft`.
 */
export const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/local/sbin/nft'].find((p) => existsSync(p)) ?? 'nft';

/**
 * One batch of a script: `ip -batch` (or `bridge -batch`) lines, an `nft -f` transaction, or
 * `conntrack` commands (one per line: its arguments; conntrack has no batch mode; always forced:
 * it exits 1 when nothing matched; parallel ones as a group in the background), inside `nsPath`
 * when given.
 */
export interface BatchStep {
  nsPath?: string;
  tool?: 'ip' | 'bridge' | 'nft' | 'conntrack';
  /** `-force`: go on past a failing line (deletes of what may be gone already); never fails the script. */
  force?: boolean;
  /** A failure of this step does not fail the script: `failedSteps` lists its label instead (a word). */
  label?: string;
  /**
   * With a label: runs in the background beside the parallel steps around it (up to
   * PARALLEL_STEPS at once); the script waits for them before the next step that is not parallel
   * and at its end. For waits that are not CPU: an nft commit that replaces anything makes its
   * process wait ~10-20 ms for an RCU grace period on exit, and parallel ones share it.
   */
  parallel?: boolean;
  lines: string[];
}

export const PARALLEL_STEPS = 16;

const FAILED_MARK = 'swarmd-step-failed';

/** The labels of the labelled steps that failed in a script's output. */
export function failedSteps(r: RunResult): Set<string> {
  return new Set([...r.stdout.matchAll(new RegExp(`^${FAILED_MARK} (\\S+)$`, 'gm'))].map((m) => m[1]));
}

/** The `sh` script of `HostExec.script` (exported for tests). */
export function scriptText(steps: readonly BatchStep[]): string {
  const body: string[] = ['set -e'];
  let background = 0;
  for (const st of steps) {
    if (!st.lines.length) continue;
    const parallel = st.parallel === true && st.label !== undefined;
    if (background && (!parallel || background === PARALLEL_STEPS)) {
      body.push('wait');
      background = 0;
    }
    const ns = st.nsPath ? `nsenter --net=${st.nsPath} ` : '';
    if (st.tool === 'conntrack') {
      const cmds = st.lines.map((l) => `${ns}conntrack ${l} >/dev/null 2>&1 || true`);
      if (parallel) {
        body.push(`{\n${cmds.join('\n')}\n} &`);
        background++;
      } else body.push(...cmds);
      continue;
    }
    const tool = st.tool === 'nft' ? `${NFT} -f /dev/stdin` : `${st.tool ?? 'ip'} ${st.force ? '-force ' : ''}-batch -`;
    const cmd = `${ns}${tool}`;
    const onFail = st.force ? ' || true' : st.label ? ` || echo ${FAILED_MARK} ${st.label}` : '';
    body.push(`${cmd} <<'EOF'${onFail}${parallel ? ' &' : ''}\n${st.lines.join('\n')}\nEOF`);
    if (parallel) background++;
  }
  if (background) body.push('wait');
  return body.join('\n');
}

export class HostExec {
  constructor(readonly hostNetns?: string) {}

  /** The host's netns path (the agent's own when none was given). */
  netnsPath(): string {
    return this.hostNetns ?? `/proc/${process.pid}/ns/net`;
  }

  run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.hostNetns ? run('nsenter', [`--net=${this.hostNetns}`, cmd, ...args], opts) : run(cmd, args, opts);
  }

  /**
   * Batches, each in the host's netns or inside a task's (nsenter), run by one `sh`: one spawn
   * from this (large) process, whose fork blocks the event loop; sh's forks are cheap. Every word
   * in the lines is a name, address or keyword of ours (no quoting needed). A forced batch never
   * fails the script; a labelled one prints its label (see `failedSteps`) instead; parallel
   * labelled ones run side by side. The script goes in on stdin (an argument is limited to
   * 128 KiB: fifty VIP tables of a large service are more); every command in it has its own.
   */
  script(steps: readonly BatchStep[]): Promise<RunResult> {
    return this.run('sh', ['-s'], { input: scriptText(steps) });
  }

  async linkExists(name: string): Promise<boolean> {
    return (await this.run('ip', ['link', 'show', 'dev', name], { okCodes: [0, 1] })).code === 0;
  }

  /** Loads a table as one transaction (`add` so the `delete` finds it, then the whole table). */
  async loadNftTable(table: string, rules: string, file: string): Promise<void> {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, `add table ip ${table}\ndelete table ip ${table}\n${rules}`);
    await this.run(NFT, ['-f', file]);
  }

  deleteNftTable(table: string): Promise<RunResult> {
    return this.run(NFT, ['delete', 'table', 'ip', table], { okCodes: [0, 1] });
  }
}
