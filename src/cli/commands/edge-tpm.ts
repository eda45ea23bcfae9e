/**
 * `edgeward edge tpm-ek-hash --tpm swtpm:host=H,port=P | device:/dev/tpmrm0 [--json]`
 *
 * Prints the EK hash of the local TPM, `sha256:HEX` (SHA-256 of the RSA EK certificate's
 * SubjectPublicKeyInfo, the `tpm:ek-hash` node selector), the value an operator enrols for this node's
 * name in the cloud's `attestors.tpm.enrolled` before the node joins with `edge join --tpm`. The EK hash
 * is public information (it identifies the TPM, it proves nothing by itself).
 *
 * The EK certificate is read from NV index 0x01c00002 and the EK is created from it (as `edge join` does),
 * so a TPM that could not attest fails here too.
 */
import { ekCertificateHash } from '../../attestation/index.js';
import { withTpmAgentSession } from '../../edge/index.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';

export const edgeTpmEkHashCommand = defineCommand({
  name: 'edge tpm-ek-hash',
  summary: "print this node's TPM EK hash (sha256:HEX) to enrol on the cloud before `edge join --tpm`",
  operands: '',
  description: [
    'On the cloud, enrol the printed value for the node name in the config file:',
    '  attestors: { tpm: { ekCaBundle: FILE, enrolled: { NAME: "sha256:HEX" } } }',
  ].join('\n'),
  args: {
    flags: {
      tpm: { type: 'string', value: 'TCTI', description: 'swtpm:host=IP,port=N or device:/dev/tpmrm0' },
      json: { type: 'boolean', description: 'print JSON' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    if (flags.tpm === undefined) throw new CliUsageError('--tpm TCTI is required', { command: 'edge tpm-ek-hash' });
    const { hash, tcti } = await withTpmAgentSession({ tcti: flags.tpm }, async (s) => {
      const evidence = await s.collect();
      return { hash: ekCertificateHash(evidence.ekCert), tcti: s.tcti.tcti };
    });
    io.stdout(flags.json ? JSON.stringify({ ek_hash: hash, tpm: tcti }) + '\n' : `${hash}\n`);
    return 0;
  },
});
