/** Workload attestors of the edge agent (the I/O side of src/attestation's `WorkloadAttestor` port). */
export { createUnixAttestor, UNIX_ATTESTOR_NAME, type UnixAttestorOptions } from './unix.js';
