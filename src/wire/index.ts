export * from './header.js';
export * from './authenticator.js';
export * from './address.js';
export * from './diagnostics.js';
