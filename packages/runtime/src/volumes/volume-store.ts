/**
 * Named volumes with the "local" driver: `<root>/volumes/<name>/_data`, created on first use
 * and kept after the containers that used them (removed only when asked, and not while in use).
 */
import { mkdir, readFile, readdir, rm, stat, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument, notFound, failedPrecondition } from '@swarmd/common/errors';

export interface VolumeInfo {
  name: string;
  driver: 'local';
  /** The host directory mounted into containers. */
  mountpoint: string;
  createdAt: string;
  labels: Record<string, string>;
}

export interface VolumeCreateOptions {
  driver?: string;
  labels?: Record<string, string>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

export function checkVolumeDriver(driver: string | undefined, name: string): void {
  if (driver !== undefined && driver !== '' && driver !== 'local') {
    throw invalidArgument(`volume ${name}: volume driver "${driver}" is not supported (only "local")`, { details: { driver } });
  }
}

export function checkVolumeName(name: string): void {
  if (!NAME.test(name)) throw invalidArgument(`volume name "${name}" is not valid (letters, digits, _ . -; no "/")`);
}

export class VolumeStore {
  readonly dir: string;

  /** `inUse(name)` tells which volumes a container still holds. */
  constructor(
    root: string,
    private readonly inUse: (name: string) => Promise<boolean> = async () => false,
  ) {
    this.dir = join(root, 'volumes');
  }

  path(name: string): string {
    checkVolumeName(name);
    return join(this.dir, name);
  }

  /** Creates the volume if it does not exist; `created` says whether this call made it. */
  async ensure(name: string, o: VolumeCreateOptions = {}): Promise<{ volume: VolumeInfo; created: boolean }> {
    checkVolumeDriver(o.driver, name);
    const existing = await this.get(name);
    if (existing) return { volume: existing, created: false };
    const dir = this.path(name);
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.${name}.creating-${process.pid}-${Date.now()}`);
    await mkdir(join(tmp, '_data'), { recursive: true, mode: 0o755 });
    const volume: VolumeInfo = { name, driver: 'local', mountpoint: join(dir, '_data'), createdAt: new Date().toISOString(), labels: o.labels ?? {} };
    await writeFile(join(tmp, 'volume.json'), JSON.stringify(volume));
    try {
      await rename(tmp, dir); // atomic: a half-made volume is never visible
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      const again = await this.get(name);
      if (again) return { volume: again, created: false };
      throw err;
    }
    return { volume, created: true };
  }

  async create(name: string, o: VolumeCreateOptions = {}): Promise<VolumeInfo> {
    return (await this.ensure(name, o)).volume;
  }

  async get(name: string): Promise<VolumeInfo | undefined> {
    try {
      return JSON.parse(await readFile(join(this.path(name), 'volume.json'), 'utf8')) as VolumeInfo;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<VolumeInfo[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: VolumeInfo[] = [];
    for (const n of names.filter((x) => !x.startsWith('.')).sort()) {
      const v = await this.get(n);
      if (v) out.push(v);
    }
    return out;
  }

  async remove(name: string, o: { force?: boolean } = {}): Promise<void> {
    const dir = this.path(name);
    if (!(await stat(dir).catch(() => undefined))) {
      if (o.force) return;
      throw notFound(`volume ${name} not found`);
    }
    if (await this.inUse(name)) throw failedPrecondition(`volume ${name} is in use by a container`);
    await rm(dir, { recursive: true, force: true });
  }
}
