/** Wire protocols shared across processes: admin (CLI <-> agent/cloud), Workload API, node API, hub. */
export * from './admin/index.js';
export * from './workload-api/index.js';
export * from './node-api/index.js';
export * from './hub/index.js';
