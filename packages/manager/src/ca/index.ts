export { x509, caDigest, type RandomBytes, defaultRandomBytes, EC_ALG } from './x509.js';
export * from './roles.js';
export * from './tokens.js';
export * from './cluster-ca.js';
export * from './verify.js';
export * from './csr.js';
export * from './renewal.js';
export * from './files.js';
export * from './grpc-auth.js';
