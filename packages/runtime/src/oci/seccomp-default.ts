/**
 * swarmd's default seccomp profile (OCI runtime-spec form): allow by default, deny a list of
 * dangerous syscalls. Written for swarmd; spec-builder.ts fills in the host's architectures.
 * A module rather than a JSON file, so that swarmd's bundle carries it.
 */
import type { OciSeccomp } from './types.js';

/** clone(2)'s namespace flags (linux/sched.h). */
const CLONE_NEW = {
  NS: 0x00020000,
  CGROUP: 0x02000000,
  UTS: 0x04000000,
  IPC: 0x08000000,
  USER: 0x10000000,
  PID: 0x20000000,
  NET: 0x40000000,
};

export const DEFAULT_SECCOMP_PROFILE: OciSeccomp = {
  defaultAction: 'SCMP_ACT_ALLOW',
  syscalls: [
    // kernel, clock, mount, namespace, keyring, tracing and module syscalls a container has no business calling (EPERM)
    {
      names: [
        '_sysctl', 'acct', 'add_key', 'afs_syscall', 'bpf', 'clock_adjtime', 'clock_settime',
        'create_module', 'delete_module', 'fanotify_init', 'finit_module', 'fsconfig', 'fsmount', 'fsopen',
        'fspick', 'get_kernel_syms', 'get_mempolicy', 'init_module', 'io_uring_enter', 'io_uring_register',
        'io_uring_setup', 'ioperm', 'iopl', 'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl',
        'lookup_dcookie', 'mbind', 'mount', 'mount_setattr', 'move_mount', 'move_pages', 'nfsservctl',
        'open_by_handle_at', 'open_tree', 'perf_event_open', 'pivot_root', 'process_vm_readv',
        'process_vm_writev', 'query_module', 'quotactl', 'quotactl_fd', 'reboot', 'request_key',
        'set_mempolicy', 'setns', 'settimeofday', 'stime', 'swapoff', 'swapon', 'sysfs', 'syslog', 'tuxcall',
        'umount', 'umount2', 'unshare', 'uselib', 'userfaultfd', 'ustat', 'vm86', 'vm86old', 'vserver',
      ],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
    },
    // clone with any CLONE_NEW* flag: a new namespace
    ...Object.values(CLONE_NEW).map((flag) => ({
      names: ['clone'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
      args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
    })),
    // clone3 hides its flags in memory: ENOSYS makes libc fall back to clone, which is filtered above
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
  ],
};
