import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { run } from '@swarmd/common';
import { PortConfig_Protocol, PortConfig_PublishMode, TaskState, type Task } from '@swarmd/proto';
import { createHosts, requires } from '@swarmd/testkit';
import { ContainerExecutor } from '../src/executor/container-executor.js';
import { BridgeNetworking, NFT } from '../src/networking/bridge-network.js';
import { startTaskSupervisor } from '../src/task-runner/task-supervisor.js';
import { FakeAssignments, makeTask, newRuntimeEnv, registryWithBusybox, Reports } from './helpers/executor-env.js';

const S = TaskState;

const publish = (t: Task, published: number, target: number): Task => ({
  ...t,
  endpoint: {
    spec: undefined,
    ports: [{ name: '', protocol: PortConfig_Protocol.TCP, targetPort: target, publishedPort: published, publishMode: PortConfig_PublishMode.HOST }],
    virtualIps: [],
  },
});
const network = (t: Task, target: string): Task => ({ ...t, spec: { ...t.spec!, networks: [{ target, aliases: [] }] } });

requires('root', 'netns', 'nft', 'runc', 'conmon', 'registry', 'busybox')(
  'bridge networking on a test host: task to task by IP, outbound NAT, publish mode=host, none, host, and nothing left behind',
  async (t) => {
    const hosts = await createHosts(1, { t });
    const h = hosts.hosts[0];
    const env = await newRuntimeEnv(t);
    const { ref } = await registryWithBusybox(t, env.images);
    const nodeId = `n${Math.random().toString(36).slice(2, 10)}`;
    const net = new BridgeNetworking({ nodeId, stateDir: join(env.root, 'agent'), hostNetns: h.nsPath, subnet: '172.31.9.0/24' });
    t.teardown(async () => {
      await net.destroy();
    });
    const executor = new ContainerExecutor({ images: env.images, containers: env.containers, nodeId, networking: net });
    const reports = new Reports();

    // An outside server (the underlay gateway, in the root netns) that reports who called. A child
    // process: this one blocks while it execs into containers.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const srv = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => s.end(q.socket.remoteAddress)).listen(${port}, '${hosts.gateway}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => void srv.kill('SIGKILL'));
    await once(srv.stdout, 'data');
    const outside = `http://${hosts.gateway}:${port}/`;

    const web = publish(makeTask('web', { image: ref(), command: ['sh', '-c', 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www'], stopGracePeriodMs: 300 }), 8080, 80);
    const client = makeTask('client', { image: ref(), command: ['sleep', '1000'], stopGracePeriodMs: 300 });
    const none = network(makeTask('isolated', { image: ref(), command: ['sleep', '1000'], stopGracePeriodMs: 300 }), 'none');
    const hostNet = network(makeTask('hostnet', { image: ref(), command: ['sleep', '1000'], stopGracePeriodMs: 300 }), 'host');
    const tasks = new FakeAssignments([web, client, none, hostNet]);
    const sup = await startTaskSupervisor({ executor, assignments: tasks, report: reports.report });
    tasks.confirm();
    t.teardown(async () => {
      await sup.stop();
    });
    const webStatus = await reports.state('web', S.TASK_STATE_RUNNING);
    for (const id of ['client', 'isolated', 'hostnet']) t.is((await reports.state(id, S.TASK_STATE_RUNNING)).state, S.TASK_STATE_RUNNING);
    t.like(webStatus.portStatus?.ports[0], { publishedPort: 8080, targetPort: 80, publishMode: PortConfig_PublishMode.HOST });

    const webIp = await net.addressOf('web');
    const clientIp = await net.addressOf('client');
    t.truthy(webIp);
    t.not(webIp, clientIp);
    t.regex(webIp!, /^172\.31\.9\./);

    // Task to task on the bridge, by IP. (httpd may need a moment to listen: retry a few times.)
    const wget = async (id: string, url: string) => {
      let last = '';
      for (let i = 0; i < 20; i++) {
        const r = await env.containers.exec(id, ['wget', '-qO-', url]  /* busybox-static's wget -T segfaults */, { timeoutMs: 3000 }).catch((e: unknown) => ({ exitCode: -1, stdout: '', stderr: String(e) }));
        if (r.exitCode === 0) return r.stdout.trim();
        last = r.stderr;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`wget ${url} from ${id}: ${last}`);
    };
    t.is(await wget('client', `http://${webIp}/`), 'hello-from-web');

    // Outbound: masqueraded to the host's underlay address.
    t.is(await wget('client', outside), h.addr);
    const table = (await h.exec(NFT, ['list', 'table', 'ip', net.table])).stdout;
    t.regex(table, /ip saddr 172\.31\.9\.0\/24 ip daddr != 172\.31\.9\.0\/24 masquerade/);
    t.regex(table, new RegExp(`tcp dport 8080 dnat to ${webIp!.replace(/\./g, '\\.')}:80`));

    // Published in mode=host: from another machine (the root netns, over the underlay), from the host itself.
    const res = await fetch(`http://${h.addr}:8080/`, { signal: AbortSignal.timeout(15_000) });
    t.is((await res.text()).trim(), 'hello-from-web');
    const self = await h.exec('busybox', ['wget', '-qO-', `http://${h.addr}:8080/`], { timeoutMs: 10_000 });
    t.is(self.stdout.trim(), 'hello-from-web');
    const loopback = await h.exec('busybox', ['wget', '-qO-', 'http://127.0.0.1:8080/'], { timeoutMs: 10_000 });
    t.is(loopback.stdout.trim(), 'hello-from-web', 'published on the host loopback too');

    // none: only lo. host: the host's eth0 with its underlay address.
    const links = (await env.containers.exec('isolated', ['ip', '-o', 'link'])).stdout;
    t.deepEqual(links.trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo']);
    t.regex((await env.containers.exec('hostnet', ['ip', '-o', '-4', 'addr'])).stdout, new RegExp(`inet ${h.addr.replace(/\./g, '\\.')}/`));

    // A stopped task frees its host port at once, while it is still assigned (as a stop-first
    // update leaves it): its replacement publishes the same port on this node.
    tasks.update({ ...web, desiredState: S.TASK_STATE_SHUTDOWN });
    await reports.state('web', S.TASK_STATE_SHUTDOWN);
    const web2 = publish(makeTask('web2', { image: ref(), command: ['sh', '-c', 'mkdir -p /www && echo hello-from-web2 > /www/index.html && exec httpd -f -p 80 -h /www'], stopGracePeriodMs: 300 }), 8080, 80);
    tasks.update(web2);
    t.is((await reports.state('web2', S.TASK_STATE_RUNNING)).state, S.TASK_STATE_RUNNING, 'the port was free for the replacement');
    t.true(tasks.tasks().some((x) => x.id === 'web'), 'the old task is still assigned');
    let page = '';
    for (let i = 0; i < 50 && page !== 'hello-from-web2'; i++) {
      page = await fetch(`http://${h.addr}:8080/`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.text().then((x) => x.trim()), () => '');
      if (page !== 'hello-from-web2') await new Promise((r) => setTimeout(r, 100));
    }
    t.is(page, 'hello-from-web2');

    // Remove every task: no veth, netns or DNAT rule stays; destroy() then takes the bridge and table.
    tasks.complete([]);
    await sup.idle();
    t.deepEqual(await env.containers.list(), []);
    const hostLinks = (await h.exec('ip', ['-o', 'link'])).stdout;
    t.notRegex(hostLinks, /swv[0-9a-f]{8}/);
    const nsList = (await run('ip', ['netns', 'list'])).stdout;
    for (const id of ['web', 'client', 'isolated']) t.false(nsList.includes(net.names(id).netns), `netns of ${id} removed`);
    t.notRegex((await h.exec(NFT, ['list', 'table', 'ip', net.table])).stdout, /dnat/);
    await net.destroy();
    t.notRegex((await h.exec('ip', ['-o', 'link'])).stdout, new RegExp(net.bridge));
    t.notRegex((await h.exec(NFT, ['list', 'tables'])).stdout, new RegExp(net.table));
  },
);
