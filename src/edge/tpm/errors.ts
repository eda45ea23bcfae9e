import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the edge TPM driver (closed union; codes are never reused for another meaning).
 *
 * - `tpm-driver/bad-tcti`: the `--tpm` value is not `swtpm:host=<IP>,port=<1-65534>` or `device:/dev/tpm[rm]N`.
 * - `tpm-driver/bad-option`: another driver option is invalid (timeout, PCR selection, AK algorithm).
 * - `tpm-driver/not-installed`: a tpm2-tools binary was not found.
 * - `tpm-driver/tool-failed`: a tpm2-tools command exited non-zero (tool, exit code, stderr tail in `detail`).
 * - `tpm-driver/timeout`: a command ran longer than the per-command timeout and was killed.
 * - `tpm-driver/output-too-large`: a command or output file exceeded its size bound.
 * - `tpm-driver/no-ek-cert`: no EK certificate could be read (NV index 0x01c00002 or the given file).
 * - `tpm-driver/bad-challenge`: the challenge from the verifier is malformed or out of bounds.
 * - `tpm-driver/closed`: the session was used after `close()` or before `collect()`.
 * - `tpm-driver/io`: a file-system error on the private working directory.
 */
export const TPM_DRIVER_ERROR_CODES = [
  'tpm-driver/bad-tcti',
  'tpm-driver/bad-option',
  'tpm-driver/not-installed',
  'tpm-driver/tool-failed',
  'tpm-driver/timeout',
  'tpm-driver/output-too-large',
  'tpm-driver/no-ek-cert',
  'tpm-driver/bad-challenge',
  'tpm-driver/closed',
  'tpm-driver/io',
] as const;
export type TpmDriverErrorCode = (typeof TPM_DRIVER_ERROR_CODES)[number];
export class TpmDriverError extends EdgewardError<TpmDriverErrorCode> {}
