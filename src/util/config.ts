import { readFileSync } from 'node:fs';
import { type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { addressFormatMessage } from './address-schema.js';

export { ConfigError } from './config-error.js';
import { ConfigError } from './config-error.js';

/** Validates a parsed config against its schema, applying defaults, with errors that name the field. */
export function validateConfig<S extends TSchema>(schema: S, raw: unknown, source: string): Static<S> {
  const value = Value.Default(schema, structuredClone(raw)) as unknown;
  const errors = [...Value.Errors(schema, value)];
  if (errors.length > 0) {
    const lines = errors.slice(0, 8).map((e) => {
      // An address is explained in the parser's words, not as a failed format.
      const format = (e.schema as { format?: unknown }).format;
      const why = typeof format === 'string' ? addressFormatMessage(format, e.value) : undefined;
      return `  ${e.path || '/'}: ${why ?? e.message}`;
    });
    throw new ConfigError(`invalid config ${source}:\n${lines.join('\n')}`);
  }
  return value as Static<S>;
}

/** Reads a YAML (or JSON, which is YAML) config file and validates it. */
export function loadConfig<S extends TSchema>(schema: S, path: string): Static<S> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config ${path} is not valid YAML: ${(err as Error).message}`);
  }
  return validateConfig(schema, raw, path);
}
