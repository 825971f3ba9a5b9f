import type { Argv } from 'yargs';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { json } from '../format.js';
import { out } from '../io.js';
import { pickService } from '../resolve.js';
import { taskDetails, taskJson, tasksTable } from '../service-format.js';
import { taskFiltersOf, withServices } from './service.js';

export function taskCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      ['ls', 'list'],
      'List tasks (all services)',
      (yy) =>
        yy
          .parserConfiguration({ 'boolean-negation': false, 'greedy-arrays': false })
          .option('filter', { alias: 'f', type: 'string', array: true, default: [] as string[], describe: 'service=, node=, desired-state=, name=, id=' })
          .option('no-trunc', { type: 'boolean', default: false, describe: 'Do not truncate' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only ids' }),
      env.action(async (a: GlobalArgs & { filter: string[]; 'no-trunc': boolean; quiet: boolean }) => {
        const f = taskFiltersOf(a.filter, 'task ls');
        await withServices(env, a, async (sc) => {
          const services = f.services.length ? await sc.listServices() : [];
          const nodes = await sc.listNodes();
          const nodeIds = f.nodeIds.map((r) => nodes.find((n) => n.id === r || n.description?.hostname === r)?.id ?? r);
          const tasks = await sc.listTasks({ serviceIds: f.services.map((r) => pickService(services, r).id), nodeIds, desiredStates: f.desiredStates, names: f.names, idPrefixes: f.idPrefixes });
          if (a.format === 'json') return out(io, json(tasks.map(taskJson)));
          if (a.quiet) return tasks.forEach((t) => out(io, t.id));
          out(io, tasksTable(tasks, nodes, { noTrunc: a['no-trunc'] }));
        });
      }),
    )
    .command(
      'inspect <tasks..>',
      'Show tasks in detail (id or unique id prefix)',
      (yy) => yy.positional('tasks', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { tasks: string[] }) => {
        await withServices(env, a, async (sc) => {
          const found = [];
          for (const ref of a.tasks) found.push(await sc.getTask(ref));
          if (a.format === 'json') out(io, json(found.map(taskJson)));
          else {
            const nodes = await sc.listNodes();
            const nets = found.some((t) => t.networks.length) ? await sc.listNetworks() : [];
            out(io, found.map((t) => taskDetails(t, nodes, nets)).join('\n\n'));
          }
        });
      }),
    );
}
