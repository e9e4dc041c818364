import type { OperatorFunction } from 'rxjs';

/** A named RxJS operator: the unit pipelines are built from. */
export type Stage<In, Out> = OperatorFunction<In, Out> & { readonly stageName: string };

export function defineStage<In, Out>(name: string, op: OperatorFunction<In, Out>): Stage<In, Out> {
  return Object.assign((source: Parameters<typeof op>[0]) => op(source), { stageName: name });
}
