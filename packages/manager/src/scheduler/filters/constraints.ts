import type { Task } from '@swarmd/proto';
import { type Filter, nodeCount } from '../filter.js';
import type { NodeInfo } from '../node-info.js';
import { type Constraint, parseConstraint, constraintsMatch } from '../../specs/constraint.js';

/** Placement constraints (node.id, node.hostname, node.role, node.platform.*, node.labels.*, engine.labels.*). */
export class ConstraintFilter implements Filter {
  readonly name = 'constraints';
  private constraints: Constraint[] = [];
  private invalid = false;
  setTask(t: Readonly<Task>): boolean {
    const exprs = t.spec?.placement?.constraints ?? [];
    this.constraints = [];
    this.invalid = false;
    for (const e of exprs) {
      const c = parseConstraint(e);
      // A constraint that does not parse matches no node (validation should have refused it).
      if (typeof c === 'string') this.invalid = true;
      else this.constraints.push(c);
    }
    return exprs.length > 0;
  }
  check(n: NodeInfo): boolean {
    return !this.invalid && constraintsMatch(this.constraints, n.node);
  }
  explain(failed: number): string {
    return `scheduling constraints not satisfied on ${nodeCount(failed)}`;
  }
}
