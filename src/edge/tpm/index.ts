/** The edge side of the `tpm` node attestor: tpm2-tools driver and `--tpm` TCTI parsing. */
export { TpmDriverError, TPM_DRIVER_ERROR_CODES, type TpmDriverErrorCode } from './errors.js';
export { parseTpmTcti, type TpmTcti } from './tcti.js';
export {
  TpmAgentSession,
  withTpmAgentSession,
  runTpm2,
  withTpmLock,
  tpm2ToolsAvailable,
  decodeEkCertificate,
  encodeCredentialFile,
  EK_CERT_NV_INDEX_RSA,
  DEFAULT_TPM_COMMAND_TIMEOUT_MS,
  DEFAULT_PCR_SELECTION,
  type TpmAgentOptions,
  type TpmAgentEvidence,
  type TpmAgentChallenge,
  type TpmAgentResponse,
  type RunTpm2Options,
} from './driver.js';
