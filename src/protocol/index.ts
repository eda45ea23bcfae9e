/** Wire protocols shared across processes: the admin protocol (CLI <-> agent/cloud). */
export * from './admin/index.js';
export * from './workload-api/index.js';
export * from './node-api/index.js';
