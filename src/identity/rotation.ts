/**
 * When to rotate an X509-SVID (SPIRE's agent rule, spiffe.md 3 "Agent rotation"): once the remaining
 * lifetime is at most half of the whole lifetime, with +-10% jitter so that a fleet issued at the same
 * moment does not come back at the same moment.
 *
 * The jitter is a pure function of the certificate's serial number, so repeated calls for one
 * certificate always agree (a random draw per call would bias rotation towards the earliest draw).
 */
import { createHash } from 'node:crypto';

export interface Validity {
  notBefore: number;
  notAfter: number;
  serialHex: string;
}

export const ROTATION_FRACTION = 0.5;
export const ROTATION_JITTER = 0.1;

/** The jitter factor in [-ROTATION_JITTER, +ROTATION_JITTER] for a certificate. */
export function rotationJitter(serialHex: string): number {
  const h = createHash('sha256').update(serialHex).digest();
  const unit = h.readUInt32BE(0) / 0xffffffff; // [0, 1]
  return (unit * 2 - 1) * ROTATION_JITTER;
}

/** The instant (epoch ms) from which `shouldRotate` is true for this certificate. */
export function rotationTime(cert: Validity): number {
  const lifetime = Math.max(0, cert.notAfter - cert.notBefore);
  const remainingAtRotation = lifetime * ROTATION_FRACTION * (1 + rotationJitter(cert.serialHex));
  return cert.notAfter - remainingAtRotation;
}

/** True when `cert` should be replaced at `now`: at about half its lifetime (+-10%), or when expired. */
export function shouldRotate(now: number, cert: Validity): boolean {
  return now >= rotationTime(cert) || now >= cert.notAfter;
}
