// `swarmctl web` in a real browser (Debian's chromium, headless, driven by playwright-core)
// against a real local cluster (1 manager, 2 workers, heartbeat 1 s): a column per node, a card
// per running task, and a killed worker's column turning down with no reload; the screenshot
// goes into the test output dir. Root, netns, runc, chromium (scripts/setup.sh installs it).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { resolveConnection } from '@swarmd/cli/client/connection';
import { connectControl } from '@swarmd/cli/client/control-client';
import { startWebServer } from '@swarmd/cli/web/server';
import { nullLogger } from '@swarmd/common';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

/** Where the screenshot goes: $TEST_OUTPUT_DIR, else packages/cli/test-output/. */
const OUT = process.env.TEST_OUTPUT_DIR ?? fileURLToPath(new URL('../../test-output/', import.meta.url));

clusterTest('the web view shows every node and running task, and a killed node turns down live', async (t) => {
  const name = `web${process.pid % 10000}`;
  const c = await startLocalCluster(t, name, '10.253.175', 1, 2);
  await c.ok('cluster', 'update', '--dispatcher-heartbeat', '1s');
  await c.ok('service', 'create', '--name', 'web', '--replicas', '4', c.image);
  await c.ok('service', 'create', '--name', 'api', '--replicas', '2', c.image);
  const env = { ...process.env, SWARMCTL_CONTEXT: join(c.dir, '..', 'ctx.json') };
  const web = await startWebServer({ listen: '127.0.0.1:0', connect: async () => connectControl(await resolveConnection({}, env)), logger: nullLogger });
  t.teardown(() => web.close());
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--headless=new'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await page.goto(web.url);
  page.setDefaultTimeout(30_000);

  // every node a column, with its state
  const hosts = ['m1', 'w1', 'w2'].map((h) => `${name}-${h}`);
  // (expressions as strings: they run in the page, this package's types have no DOM)
  await page.waitForFunction(`document.querySelectorAll('section.node').length === ${hosts.length}`);
  for (const h of hosts) t.is(await page.locator(`section[data-node="${h}"]`).getAttribute('data-state'), 'ready', h);
  // a card per running task, in the column of its node
  const running = [...(await c.running('web')), ...(await c.running('api'))];
  t.is(running.length, 6);
  await page.waitForFunction(`document.querySelectorAll('.task[data-state="running"]').length === ${running.length}`, undefined, { timeout: 20_000 });
  const nodes = await c.nodes();
  for (const task of running) {
    const host = nodes.find((n) => n.id === task.nodeId)?.description?.hostname ?? '';
    t.is(await page.locator(`section[data-node="${host}"] .task[data-task="${task.id}"]`).count(), 1, `card of ${task.id} on ${host}`);
  }

  // a worker killed: its column turns down without a reload (the managers' heartbeat timeout)
  await c.ok('local', 'stop', '--name', name, '--kill', 'w2');
  const killedAt = Date.now();
  await page.waitForSelector(`section[data-node="${name}-w2"][data-state="down"]`, { timeout: 30_000 });
  t.log(`w2 shown down ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`);
  const colour = await page.evaluate(`getComputedStyle(document.querySelector('section[data-node="${name}-w2"]')).borderTopColor`);
  t.is(colour, 'rgb(220, 38, 38)', 'a down node is red');
  await mkdir(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, 'web-view.png'), fullPage: true });
});
