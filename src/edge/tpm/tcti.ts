/**
 * The `--tpm` value: a TPM Command Transmission Interface (TCTI) configuration string for tpm2-tools.
 * Only two strict forms are accepted, so that nothing a user types can smuggle further TCTI options or
 * reach a host name lookup:
 *
 *   swtpm:host=<IPv4 or IPv6 literal>,port=<1..65534>   (swtpm's TCP server; port+1 is its control port)
 *   device:/dev/tpmrm<N> | device:/dev/tpm<N>           (the kernel's resource-managed or raw device)
 */
import { isIP } from 'node:net';
import { TpmDriverError } from './errors.js';

export type TpmTcti =
  | { kind: 'swtpm'; host: string; port: number; tcti: string }
  | { kind: 'device'; path: string; tcti: string };

const MAX_TCTI_LENGTH = 128;
const SWTPM = /^swtpm:host=([0-9A-Fa-f:.]+),port=([1-9][0-9]{0,4})$/;
const DEVICE = /^device:(\/dev\/tpm(?:rm)?(?:0|[1-9][0-9]{0,2}))$/;

function bad(message: string): never {
  throw new TpmDriverError('tpm-driver/bad-tcti', message);
}

/** Parse and validate a TCTI string; returns it in canonical form. */
export function parseTpmTcti(value: string): TpmTcti {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TCTI_LENGTH) bad('TPM TCTI must be a non-empty string');
  const sw = SWTPM.exec(value);
  if (sw !== null) {
    const host = sw[1]!;
    const port = Number(sw[2]);
    if (isIP(host) === 0) bad('swtpm host must be an IP address literal');
    // swtpm listens for commands on `port` and for control on `port + 1`.
    if (port < 1 || port > 65534) bad('swtpm port must be 1..65534');
    return { kind: 'swtpm', host, port, tcti: `swtpm:host=${host},port=${port}` };
  }
  const dev = DEVICE.exec(value);
  if (dev !== null) return { kind: 'device', path: dev[1]!, tcti: `device:${dev[1]!}` };
  return bad('TPM must be swtpm:host=<IP>,port=<N> or device:/dev/tpmrm<N>');
}
