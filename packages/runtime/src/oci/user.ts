/**
 * Resolves an image or service `user` ("name", "uid", "name:group", "uid:gid"...) against the
 * rootfs' /etc/passwd and /etc/group, as Docker does: numeric ids need no entry, names must
 * exist, and the user's supplementary groups are its primary group and those of /etc/group that list it.
 */
import { invalidArgument } from '@swarmd/common/errors';
import { readFileInRoot } from './rootfs-path.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** From /etc/passwd, "/" when unknown. */
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[2]) && /^\d+$/.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' }));
}

export function parseGroup(text: string): GroupEntry[] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2]))
    .map((f) => ({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

const isId = (s: string) => /^\d+$/.test(s) && Number(s) <= 0xffffffff - 1;

/** Pure resolution from the two files' text (undefined when a file is missing). */
export function resolveUserFrom(spec: string, passwdText: string | undefined, groupText: string | undefined): ResolvedUser {
  const raw = spec.trim() || '0';
  const [userPart, groupPart, extra] = raw.split(':');
  if (extra !== undefined || userPart === '') throw invalidArgument(`user "${spec}": expected user, uid, user:group or uid:gid`);
  const passwd = passwdText === undefined ? [] : parsePasswd(passwdText);
  const groups = groupText === undefined ? [] : parseGroup(groupText);

  let entry: PasswdEntry | undefined;
  let uid: number;
  if (isId(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) {
      throw invalidArgument(
        `user "${userPart}" not found in the image's /etc/passwd${passwdText === undefined ? ' (the image has no /etc/passwd)' : ''}`,
      );
    }
    uid = entry.uid;
  }

  let gid: number;
  if (groupPart === undefined || groupPart === '') {
    gid = entry?.gid ?? 0;
  } else if (isId(groupPart)) {
    gid = Number(groupPart);
  } else {
    const g = groups.find((x) => x.name === groupPart);
    if (!g) throw invalidArgument(`group "${groupPart}" not found in the image's /etc/group`);
    gid = g.gid;
  }

  // Supplementary groups, as Docker sets them: the primary group first, then (only when no group
  // was forced) those listing the user by name. `docker run -u app` of a user in group daemon
  // runs with groups "1 2345" (primary 2345), `-u 1234:2345` with "2345", `-u 4321` with "0".
  const members = entry && (groupPart === undefined || groupPart === '') ? groups.filter((g) => g.members.includes(entry.name)).map((g) => g.gid) : [];
  return { uid, gid, additionalGids: [...new Set([gid, ...members])], home: entry?.home ?? '/' };
}

export async function resolveUser(rootfs: string, spec: string): Promise<ResolvedUser> {
  const [passwd, group] = await Promise.all([readFileInRoot(rootfs, '/etc/passwd'), readFileInRoot(rootfs, '/etc/group')]);
  return resolveUserFrom(spec, passwd, group);
}
