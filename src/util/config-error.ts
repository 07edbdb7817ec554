/** A configuration that cannot work: the daemon says why and does not start. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
