/**
 * Pure unix selector mapping (reference §3 "Workload attestation (unix)": unix:uid, unix:user, unix:gid,
 * unix:group, unix:supplementary_gid, unix:supplementary_group, unix:path, unix:sha256) and the attestor
 * combinator (fail closed, dedupe, PID-reuse check after all attestors).
 */
import { describe, expect, it } from 'vitest';
import {
  attestWorkload,
  combineSelectors,
  parseSelector,
  selectorKey,
  UnixEvidenceError,
  unixSelectors,
  WorkloadAttestationError,
  type ProcessLiveness,
  type Selector,
  type WorkloadAttestor,
  type WorkloadCaller,
} from '../../../src/attestation/index.js';

const keys = (l: readonly Selector[]): string[] => l.map(selectorKey);
const SHA = 'ab'.repeat(32);

describe('unixSelectors', () => {
  it('maps full evidence to SPIRE unix selector names in a fixed order', () => {
    const got = unixSelectors({
      uid: 1000,
      gid: 100,
      supplementaryGids: [44, 4, 44],
      userName: 'alice',
      groupName: 'users',
      supplementaryGroupNames: ['video', 'adm'],
      exePath: '/usr/bin/web',
      exeSha256: SHA.toUpperCase(),
    });
    expect(keys(got)).toEqual([
      'unix:uid:1000',
      'unix:user:alice',
      'unix:gid:100',
      'unix:group:users',
      'unix:supplementary_gid:4',
      'unix:supplementary_gid:44',
      'unix:supplementary_group:adm',
      'unix:supplementary_group:video',
      'unix:path:/usr/bin/web',
      `unix:sha256:${SHA}`, // lower-cased
    ]);
    expect(got.every((s) => s.type === 'unix' && Object.isFrozen(s))).toBe(true);
    // each selector is a valid selector text
    for (const k of keys(got)) expect(selectorKey(parseSelector(k))).toBe(k);
  });

  it('minimal evidence: ids only (root)', () => {
    expect(keys(unixSelectors({ uid: 0, gid: 0, supplementaryGids: [] }))).toEqual(['unix:uid:0', 'unix:gid:0']);
  });

  it('omits names and paths that cannot be spelled as selector values (never grants more)', () => {
    const got = unixSelectors({
      uid: 1,
      gid: 2,
      supplementaryGids: [],
      userName: 'jos\u00e9', // non-ASCII
      groupName: '',
      supplementaryGroupNames: ['ok', 'has space'],
      exePath: '/usr/bin/web (deleted)', // kernel marker for a replaced binary
    });
    expect(keys(got)).toEqual(['unix:uid:1', 'unix:gid:2', 'unix:supplementary_group:ok']);
    expect(keys(unixSelectors({ uid: 1, gid: 2, supplementaryGids: [], exePath: 'relative/bin' }))).toEqual(['unix:uid:1', 'unix:gid:2']);
    expect(keys(unixSelectors({ uid: 1, gid: 2, supplementaryGids: [], exePath: '/' + 'a'.repeat(1100) }))).toEqual(['unix:uid:1', 'unix:gid:2']);
  });

  it('refuses malformed numeric evidence (a collector bug) with a typed error', () => {
    const bad = [
      { uid: -1, gid: 0, supplementaryGids: [] },
      { uid: 1.5, gid: 0, supplementaryGids: [] },
      { uid: 0xffff_ffff, gid: 0, supplementaryGids: [] }, // (uid_t)-1 = no id
      { uid: 0, gid: Number.NaN, supplementaryGids: [] },
      { uid: 0, gid: 0, supplementaryGids: [1, -2] },
      { uid: 0, gid: 0, supplementaryGids: 'x' as unknown as number[] },
      { uid: 0, gid: 0, supplementaryGids: [], exeSha256: 'abc' },
      { uid: 0, gid: 0, supplementaryGids: [], exeSha256: 'g'.repeat(64) },
    ];
    for (const e of bad) {
      expect(() => unixSelectors(e), JSON.stringify(e)).toThrow(UnixEvidenceError);
    }
    expect(keys(unixSelectors({ uid: 0xffff_fffe, gid: 0, supplementaryGids: [] }))[0]).toBe('unix:uid:4294967294');
  });
});

// ---------------------------------------------------------------------------------------------------------

class FakeWatch implements ProcessLiveness {
  alive = true;
  calls: Array<{ uid: number; gid: number } | undefined> = [];
  throws: Error | undefined;
  isAlive(expected?: { uid: number; gid: number }): boolean {
    this.calls.push(expected);
    if (this.throws !== undefined) throw this.throws;
    return this.alive;
  }
}

function caller(watch: ProcessLiveness | undefined = new FakeWatch()): WorkloadCaller {
  return { cred: { pid: 4242, uid: 1000, gid: 100 }, groups: [], watch };
}

function fixed(name: string, list: string[], delayTicks = 0): WorkloadAttestor {
  return {
    name,
    async attest(): Promise<readonly Selector[]> {
      for (let i = 0; i < delayTicks; i++) await Promise.resolve();
      return list.map(parseSelector);
    },
  };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WorkloadAttestationError);
    return (e as WorkloadAttestationError).code;
  }
  throw new Error('expected a WorkloadAttestationError');
}

describe('combineSelectors / attestWorkload', () => {
  it('combines several attestors: union, de-duplicated, sorted', async () => {
    const a = fixed('unix', ['unix:uid:1000', 'unix:gid:100']);
    const b = fixed('docker', ['docker:label:app=web', 'unix:uid:1000'], 3);
    const w = new FakeWatch();
    const got = await attestWorkload([a, b], caller(w));
    expect(keys(got)).toEqual(['docker:label:app=web', 'unix:gid:100', 'unix:uid:1000']);
    // PID-reuse defence after all attestors, with the connect-time ids (reference §3)
    expect(w.calls).toEqual([{ uid: 1000, gid: 100 }]);
    expect(keys(combineSelectors([[parseSelector('b:1')], [parseSelector('a:1'), parseSelector('b:1')]]))).toEqual(['a:1', 'b:1']);
  });

  it('fails closed when any attestor fails, keeping typed errors and wrapping others', async () => {
    const ok = fixed('unix', ['unix:uid:1']);
    const typed: WorkloadAttestor = {
      name: 'x',
      attest: () => Promise.reject(new WorkloadAttestationError('workload-attestation/credentials-changed', 'changed')),
    };
    const untyped: WorkloadAttestor = { name: 'y', attest: () => Promise.reject(new Error('boom')) };
    expect(await codeOf(attestWorkload([ok, typed], caller()))).toBe('workload-attestation/credentials-changed');
    const e = await attestWorkload([ok, untyped], caller()).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'workload-attestation/failed', detail: { attestor: 'y' } });
    expect((e as Error).cause).toBeInstanceOf(Error);
    expect(await codeOf(attestWorkload([], caller()))).toBe('workload-attestation/failed');
  });

  it('refuses invalid or unbounded attestor output', async () => {
    const junk: WorkloadAttestor = { name: 'j', attest: async () => [{ type: 'unix', value: 'has space' }] };
    const notArray: WorkloadAttestor = { name: 'n', attest: async () => 'unix:uid:1' as unknown as Selector[] };
    const many = fixed('m', Array.from({ length: 20 }, (_, i) => `m:${i}`));
    expect(await codeOf(attestWorkload([junk], caller()))).toBe('workload-attestation/failed');
    expect(await codeOf(attestWorkload([notArray], caller()))).toBe('workload-attestation/failed');
    expect(await codeOf(attestWorkload([many], caller(), { maxSelectorsPerAttestor: 10 }))).toBe('workload-attestation/failed');
  });

  it('process gone / no watch / watch failure / aborted', async () => {
    const a = fixed('unix', ['unix:uid:1000']);
    const gone = new FakeWatch();
    gone.alive = false;
    expect(await codeOf(attestWorkload([a], caller(gone)))).toBe('workload-attestation/process-gone');
    expect(await codeOf(attestWorkload([a], { ...caller(), watch: undefined }))).toBe('workload-attestation/failed');
    const broken = new FakeWatch();
    broken.throws = new Error('EACCES');
    expect(await codeOf(attestWorkload([a], caller(broken)))).toBe('workload-attestation/failed');
    const ac = new AbortController();
    ac.abort(new Error('client went away'));
    expect(await codeOf(attestWorkload([a], caller(), { signal: ac.signal }))).toBe('workload-attestation/aborted');
  });
});
