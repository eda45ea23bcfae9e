/**
 * The device twin store (src/edge/devices/twin-store.ts) over real SQLite files through the host's StateFiles
 * (contract #6 "Twins": DATA/devices/twins.db, dir 0700, file 0600; reported value + at per property, lastSeen,
 * state; survives restarts; bounded).
 */
import { mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { MAX_TWIN_DEVICES, TWIN_DB_FILE, TwinStoreError, openTwinStore, type TwinStore, type TwinStoreErrorCode } from '../../src/edge/devices/twin-store.js';
import { ManualClock } from '../../src/identity/index.js';
import { MAX_DEVICE_PROPERTIES } from '../../src/protocol/index.js';
import { tempDir } from '../helpers/index.js';

const T0 = 1_700_000_000_000;
const DEV = 'default/thermo-1';

async function fixture(): Promise<{ dir: string; clock: ManualClock; open(): TwinStore }> {
  const dir = join(await tempDir(), 'data', 'devices');
  const clock = new ManualClock(T0);
  const open = (): TwinStore => {
    const s = openTwinStore({ dir, files: hostStateFiles, clock });
    onTestFinished(() => s.close());
    return s;
  };
  return { dir, clock, open };
}

function code(fn: () => unknown): TwinStoreErrorCode {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TwinStoreError);
    return (e as TwinStoreError).code;
  }
  throw new Error('expected a TwinStoreError');
}

describe('twin store', () => {
  it('creates DATA/devices 0700 and twins.db 0600', async () => {
    const f = await fixture();
    f.open();
    expect(statSync(f.dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(f.dir, TWIN_DB_FILE)).mode & 0o777).toBe(0o600);
  });

  it('keeps reported values (value + at), lastSeen and state across a reopen', async () => {
    const f = await fixture();
    const s = f.open();
    expect(s.get(DEV)).toBeUndefined();
    s.putReported(DEV, [{ name: 'temperature', value: '20.5' }, { name: 'setpoint', value: '21' }], T0 + 1);
    s.putReported(DEV, [{ name: 'temperature', value: '20.75' }], T0 + 2);
    s.setState(DEV, 'online', T0 + 3);
    s.touch(DEV, T0 + 4);
    s.close();
    const again = f.open();
    const rec = again.get(DEV);
    expect(rec).toMatchObject({ device: DEV, lastSeen: T0 + 4, state: 'online', stateAt: T0 + 3, dirty: true, reportedPhase: undefined });
    expect([...(rec?.reported ?? [])]).toEqual([
      ['setpoint', { value: '21', at: T0 + 1 }],
      ['temperature', { value: '20.75', at: T0 + 2 }],
    ]);
    expect(again.count()).toBe(1);
  });

  it('seq / dirty: markReported clears what was reported, never a later change, and survives a reopen', async () => {
    const f = await fixture();
    const s = f.open();
    const seq1 = s.putReported(DEV, [{ name: 'a', value: '1' }], T0);
    const seq2 = s.putReported(DEV, [{ name: 'a', value: '2' }], T0);
    expect(seq2).toBeGreaterThan(seq1);
    expect(s.markReported(DEV, seq1, 'Online')).toBe(true);
    expect(s.get(DEV)).toMatchObject({ dirty: true, reportedPhase: 'Online' }); // the change at seq2 is still unreported
    s.markReported(DEV, seq2, 'Online');
    expect(s.get(DEV)?.dirty).toBe(false);
    // a touch without `dirty` is not a change; with it, it is
    s.touch(DEV, T0 + 5);
    expect(s.get(DEV)?.dirty).toBe(false);
    s.touch(DEV, T0 + 6, { dirty: true });
    expect(s.get(DEV)?.dirty).toBe(true);
    // reportedSeq is never raised past seq, nor lowered
    s.markReported(DEV, 1_000_000, 'Offline');
    s.markReported(DEV, 0, 'Offline');
    const rec = s.get(DEV);
    expect(rec?.reportedSeq).toBe(rec?.seq);
    s.close();
    expect(f.open().devices()).toEqual([{ device: DEV, dirty: false, reportedPhase: 'Offline' }]);
    // lastSeen never goes back
    const t = f.open();
    t.touch(DEV, T0);
    expect(t.get(DEV)?.lastSeen).toBe(T0 + 6);
    expect(t.markReported('default/nobody', 1, 'Online')).toBe(false);
  });

  it(`at most ${MAX_DEVICE_PROPERTIES} properties per device: a write past it fails whole (twin-store/full)`, async () => {
    const f = await fixture();
    const s = f.open();
    const names = Array.from({ length: MAX_DEVICE_PROPERTIES }, (_, i) => ({ name: `p${i}`, value: String(i) }));
    s.putReported(DEV, names.slice(0, 100), T0);
    expect(code(() => s.putReported(DEV, [...names.slice(100), { name: 'extra', value: 'x' }], T0 + 1))).toBe('twin-store/full');
    expect(s.get(DEV)?.reported.size).toBe(100); // nothing of the refused batch was written
    s.putReported(DEV, names.slice(100), T0 + 2);
    expect(s.get(DEV)?.reported.size).toBe(MAX_DEVICE_PROPERTIES);
    s.putReported(DEV, [{ name: 'p0', value: 'updated' }], T0 + 3); // updating an existing one is fine
    expect(code(() => s.putReported(DEV, [{ name: 'extra', value: 'x' }], T0 + 4))).toBe('twin-store/full');
  });

  it(`at most ${MAX_TWIN_DEVICES} devices (twin-store/full); known devices still write`, async () => {
    const f = await fixture();
    f.open().close();
    const db = new Database(join(f.dir, TWIN_DB_FILE));
    const ins = db.prepare('INSERT INTO devices (device, last_seen, state, state_at, seq, reported_seq, reported_phase, created_at) VALUES (?, 0, NULL, NULL, 0, 0, NULL, 0)');
    db.transaction(() => {
      for (let i = 0; i < MAX_TWIN_DEVICES; i++) ins.run(`default/d-${i}`);
    })();
    db.close();
    const s = f.open();
    expect(s.count()).toBe(MAX_TWIN_DEVICES);
    expect(code(() => s.touch('default/one-too-many', T0))).toBe('twin-store/full');
    expect(code(() => s.putReported('default/one-too-many', [{ name: 'a', value: '1' }], T0))).toBe('twin-store/full');
    expect(code(() => s.setState('default/one-too-many', 'online', T0))).toBe('twin-store/full');
    expect(s.get('default/one-too-many')).toBeUndefined();
    s.putReported('default/d-7', [{ name: 'a', value: '1' }], T0);
    expect(s.devices()).toHaveLength(MAX_TWIN_DEVICES);
    expect(s.forget('default/d-7')).toBe(true);
    s.touch('default/one-too-many', T0); // room again
  });

  it('forget removes the device and its values; retainProperties drops values of removed properties', async () => {
    const f = await fixture();
    const s = f.open();
    s.putReported(DEV, [{ name: 'a', value: '1' }, { name: 'b', value: '2' }, { name: 'c', value: '3' }], T0);
    s.putReported('default/other', [{ name: 'a', value: '9' }], T0);
    const before = s.get(DEV)?.seq ?? 0;
    expect(s.retainProperties(DEV, ['a', 'c', 'zzz'])).toBe(1);
    expect([...(s.get(DEV)?.reported.keys() ?? [])]).toEqual(['a', 'c']);
    expect(s.get(DEV)?.seq).toBe(before + 1); // a change to report
    expect(s.retainProperties(DEV, ['a', 'c'])).toBe(0);
    expect(s.forget(DEV)).toBe(true);
    expect(s.forget(DEV)).toBe(false);
    expect(s.get(DEV)).toBeUndefined();
    expect(s.get('default/other')?.reported.get('a')?.value).toBe('9');
    const db = new Database(join(f.dir, TWIN_DB_FILE), { readonly: true });
    expect(db.prepare('SELECT COUNT(*) AS n FROM twins WHERE device = ?').get(DEV)).toEqual({ n: 0 });
    db.close();
  });

  it('refuses invalid arguments (twin-store/invalid)', async () => {
    const f = await fixture();
    const s = f.open();
    expect(code(() => s.putReported('no-namespace', [{ name: 'a', value: '1' }], T0))).toBe('twin-store/invalid');
    expect(code(() => s.putReported(DEV, [{ name: 'bad/name', value: '1' }], T0))).toBe('twin-store/invalid');
    expect(code(() => s.putReported(DEV, [{ name: 'a', value: 'x'.repeat(1025) }], T0))).toBe('twin-store/invalid');
    expect(code(() => s.putReported(DEV, [{ name: 'a', value: 1 as unknown as string }], T0))).toBe('twin-store/invalid');
    expect(code(() => s.putReported(DEV, Array.from({ length: 129 }, (_, i) => ({ name: `p${i}`, value: '1' })), T0))).toBe('twin-store/invalid');
    expect(code(() => s.touch(DEV, -1))).toBe('twin-store/invalid');
    expect(code(() => s.touch(DEV, 1.5))).toBe('twin-store/invalid');
    expect(code(() => s.setState(DEV, 'on line', T0))).toBe('twin-store/invalid');
    expect(code(() => s.markReported(DEV, 1, 'online'))).toBe('twin-store/invalid');
    expect(s.get('not a device')).toBeUndefined();
    expect(s.count()).toBe(0);
  });

  it('rows that are not what the store writes (the file was edited) are left out', async () => {
    const f = await fixture();
    const s = f.open();
    s.putReported(DEV, [{ name: 'a', value: '1' }, { name: 'b', value: '2' }], T0);
    s.close();
    const db = new Database(join(f.dir, TWIN_DB_FILE));
    db.prepare("UPDATE twins SET value = ? WHERE property = 'a'").run('x'.repeat(5000));
    db.prepare("INSERT INTO twins (device, property, value, at) VALUES (?, '../evil', 'v', 1)").run(DEV);
    db.prepare("UPDATE devices SET state = 'not a state'").run();
    db.close();
    const rec = f.open().get(DEV);
    expect([...(rec?.reported.keys() ?? [])]).toEqual(['b']);
    expect(rec?.state).toBeUndefined();
  });

  it('refuses a file of a newer schema (twin-store/version), a symlinked directory, and use after close (twin-store/io)', async () => {
    const f = await fixture();
    f.open().close();
    const db = new Database(join(f.dir, TWIN_DB_FILE));
    db.prepare('UPDATE schema_version SET version = 99').run();
    db.close();
    expect(code(() => f.open())).toBe('twin-store/version');

    const root = await tempDir();
    mkdirSync(join(root, 'real'), { mode: 0o700 });
    symlinkSync(join(root, 'real'), join(root, 'devices'));
    expect(code(() => openTwinStore({ dir: join(root, 'devices'), files: hostStateFiles, clock: f.clock }))).toBe('twin-store/io');

    const g = await fixture();
    const s = g.open();
    s.close();
    expect(code(() => s.get(DEV))).toBe('twin-store/io');
    expect(code(() => s.touch(DEV, T0))).toBe('twin-store/io');
  });
});
