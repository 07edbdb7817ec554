import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** The first problem of `value` against `schema`, naming the field (`/paths/0/latencyMs: ...`), or undefined. */
export function answerProblem(schema: TSchema, value: unknown): string | undefined {
  let check = compiled.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }
  if (check.Check(value)) return undefined;
  const first = check.Errors(value).First();
  return first ? `${first.path || '/'}: ${first.message}` : 'does not match the API schema';
}

/** `value` typed by `schema`, or `fail(problem)` thrown: clients never pass on a malformed answer. */
export function checkAnswer<S extends TSchema>(
  schema: S,
  value: unknown,
  fail: (problem: string) => Error,
): Static<S> {
  const problem = answerProblem(schema, value);
  if (problem !== undefined) throw fail(problem);
  return value as Static<S>;
}
