/**
 * Reading an edge policy file (registration entries, MQTT ACLs): at most `maxBytes` of a regular file, exactly
 * one strict YAML 1.2 document (core schema, unique string keys, no unknown tags, aliases only up to a limit).
 * Errors are `PolicyError` (`policy/io`, `policy/too-large`, `policy/syntax`).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { STRICT_YAML_OPTIONS } from '../identity/index.js';
import { PolicyError } from './registration/errors.js';

/** Read at most `maxBytes` of a regular file (symlinks are followed: config maps mount them). */
export function readBounded(path: string, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new PolicyError('policy/io', `cannot open policy file ${path}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new PolicyError('policy/io', `policy file ${path} is not a regular file`);
    if (st.size > maxBytes) {
      throw new PolicyError('policy/too-large', `policy file ${path} is larger than ${maxBytes} bytes`, { detail: { size: st.size, maxBytes } });
    }
    const buf = Buffer.alloc(maxBytes + 1);
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, total, buf.length - total, total);
      if (n === 0) break;
      total += n;
      if (total > maxBytes) {
        throw new PolicyError('policy/too-large', `policy file ${path} grew beyond ${maxBytes} bytes while reading`, { detail: { maxBytes } });
      }
    }
    return buf.subarray(0, total);
  } catch (e) {
    if (e instanceof PolicyError) throw e;
    throw new PolicyError('policy/io', `cannot read policy file ${path}`, { cause: e });
  } finally {
    closeSync(fd);
  }
}

/** Parse one YAML document strictly into plain JS values. Throws `policy/syntax`. */
export function parseYaml(text: string, maxAliasCount: number): unknown {
  const docs = parseAllDocuments(text, { ...STRICT_YAML_OPTIONS, prettyErrors: true });
  if (!Array.isArray(docs) || docs.length !== 1) {
    const n = Array.isArray(docs) ? docs.length : 0;
    throw new PolicyError('policy/syntax', `policy must contain exactly one YAML document (found ${n})`, { detail: { documents: n } });
  }
  const doc = docs[0] as (typeof docs)[number];
  const issues = [...doc.errors, ...doc.warnings];
  if (issues.length > 0) {
    const problems = issues.slice(0, 20).map((e) => ({ path: e.linePos?.[0] === undefined ? '' : `line ${e.linePos[0].line}`, message: `${e.code}: ${e.message.split('\n')[0] ?? ''}` }));
    throw new PolicyError('policy/syntax', `policy is not valid YAML: ${problems[0]?.message ?? ''}`, { problems, detail: { issues: issues.length } });
  }
  try {
    return doc.toJS({ maxAliasCount });
  } catch (e) {
    throw new PolicyError('policy/syntax', `policy YAML uses aliases beyond the limit (${maxAliasCount})`, { cause: e });
  }
}

