/**
 * The edge's durable copy of its devices' twins (issue #6, "Twins are stored in the edge SQLite and survive
 * restarts"): DATA/devices/twins.db (dir 0700, file 0600, WAL, symlinks refused: StateFiles.openDatabase).
 *
 * Per device (`NAMESPACE/NAME`, only devices of this node are ever written: the engine checks the directory):
 * the reported (actual) value and when the edge received it per property, when the device was last seen, the
 * state it last published on `state/update`, and a change counter for reporting to the cloud: `seq` grows with
 * every change, `reported_seq` is the `seq` the cloud was last sent (dirty = seq > reported_seq), so a change
 * that the edge stored but had not reported before a restart is reported after it.
 *
 * Not sealed: twin values are telemetry that goes to the cloud in the plain status outbox anyway (the hub
 * store's outbox is not sealed either). Rows are checked when read; a malformed row is left out.
 *
 * Bounded: at most MAX_TWIN_DEVICES devices and MAX_DEVICE_PROPERTIES properties per device (the model's
 * own limit); a write past either fails with `twin-store/full` and writes nothing.
 */
import { join } from 'node:path';
import { isDeviceName } from '../../attestation/index.js';
import { EdgewardError, type Clock, type StateDatabase, type StateFiles } from '../../identity/index.js';
import { DEVICE_PROPERTY_NAME_PATTERN, MAX_DEVICE_PROPERTIES, MAX_TWIN_VALUE_BYTES } from '../../protocol/index.js';
import { ensurePrivateDir } from '../hub/store.js';
import { DEVICE_STATE_PATTERN } from './twin-messages.js';

export const TWIN_DB_FILE = 'twins.db';
/** Most devices with twins on one node. */
export const MAX_TWIN_DEVICES = 10_000;

/**
 * - `twin-store/io`: the directory or file cannot be created/opened (also: a symlink, another owner), or SQLite
 *   failed; also any use after `close`.
 * - `twin-store/version`: twins.db was written by a newer schema than this build knows.
 * - `twin-store/corrupt`: the schema version table is malformed, or SQLite reports a corrupt file.
 * - `twin-store/full`: a write would go past MAX_TWIN_DEVICES devices or MAX_DEVICE_PROPERTIES properties.
 * - `twin-store/invalid`: an argument is invalid (device name, property name, value, state, time).
 */
export const TWIN_STORE_ERROR_CODES = ['twin-store/io', 'twin-store/version', 'twin-store/corrupt', 'twin-store/full', 'twin-store/invalid'] as const;
export type TwinStoreErrorCode = (typeof TWIN_STORE_ERROR_CODES)[number];
export class TwinStoreError extends EdgewardError<TwinStoreErrorCode> {}

export interface StoredTwinValue {
  readonly value: string;
  /** When the edge received it (epoch ms). */
  readonly at: number;
}

export interface DeviceTwinRecord {
  readonly device: string;
  /** Reported values by property name (only well-formed rows). */
  readonly reported: ReadonlyMap<string, StoredTwinValue>;
  /** Last message or connection of the device (epoch ms). */
  readonly lastSeen: number;
  /** The state of its last `state/update`, if any. */
  readonly state: string | undefined;
  readonly stateAt: number | undefined;
  /** Change counter; pass it to `markReported` once the record was reported. */
  readonly seq: number;
  readonly reportedSeq: number;
  /** Changed since last reported (seq > reportedSeq). */
  readonly dirty: boolean;
  /** The phase of the last report (`Online` / `Offline`), if one was made. */
  readonly reportedPhase: string | undefined;
}

export interface TwinDeviceSummary {
  readonly device: string;
  readonly dirty: boolean;
  readonly reportedPhase: string | undefined;
}

export interface TouchOptions {
  /** Count the touch as a change to report (seq + 1). */
  dirty?: boolean;
}

export interface TwinStore {
  /** The device's record; undefined when it has none. */
  get(device: string): DeviceTwinRecord | undefined;
  /**
   * Store reported values received at `at` (one transaction; creates the device's row; also sets lastSeen and
   * counts as a change). Returns the new seq. `twin-store/full` past the bounds.
   */
  putReported(device: string, values: ReadonlyArray<{ readonly name: string; readonly value: string }>, at: number): number;
  /** lastSeen = at (creating the row); with `dirty`, also a change. Returns the seq. */
  touch(device: string, at: number, options?: TouchOptions): number;
  /** Store the device's `state/update` state (a change; also sets lastSeen). Returns the new seq. */
  setState(device: string, state: string, at: number): number;
  /** The record with `seq` was reported with `phase`: reportedSeq = seq (never lowered). False: no such device. */
  markReported(device: string, seq: number, phase: string): boolean;
  /** Drop reported values of properties not in `keep` (the model changed). Returns how many were dropped (a change if > 0). */
  retainProperties(device: string, keep: readonly string[]): number;
  /** Every device with a row (at most MAX_TWIN_DEVICES), sorted by name. */
  devices(): TwinDeviceSummary[];
  /** Remove the device's rows (it left this node). True if it had any. */
  forget(device: string): boolean;
  /** How many devices have rows. */
  count(): number;
  close(): void;
}

export interface TwinStoreOptions {
  /** DATA/devices: created 0700 (an existing one must be ours and not a symlink; it is tightened). */
  dir: string;
  files: StateFiles;
  clock: Clock;
}

/** Schema migrations (append only). */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    state TEXT,
    state_at INTEGER,
    seq INTEGER NOT NULL,
    reported_seq INTEGER NOT NULL,
    reported_phase TEXT,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE twins (
    device TEXT NOT NULL,
    property TEXT NOT NULL,
    value TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (device, property)
  ) STRICT, WITHOUT ROWID;
  `,
];

const PHASE_PATTERN = /^[A-Z][A-Za-z]{0,31}$/;

interface DeviceRow {
  device: string;
  last_seen: number;
  state: string | null;
  state_at: number | null;
  seq: number;
  reported_seq: number;
  reported_phase: string | null;
}

interface TwinRow {
  property: string;
  value: string;
  at: number;
}

function fail(code: TwinStoreErrorCode, message: string, cause?: unknown): never {
  throw new TwinStoreError(code, message, cause === undefined ? undefined : { cause });
}

function storeFailure(e: unknown, what: string): TwinStoreError {
  if (e instanceof TwinStoreError) return e;
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')) {
    return new TwinStoreError('twin-store/corrupt', `the device twin store is corrupt (${what})`, { cause: e });
  }
  return new TwinStoreError('twin-store/io', `the device twin store cannot ${what}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: e });
}

const isTime = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

function checkDevice(device: unknown): string {
  if (!isDeviceName(device)) fail('twin-store/invalid', 'a device is named NAMESPACE/NAME');
  return device;
}

function checkTime(at: unknown): number {
  if (!isTime(at)) fail('twin-store/invalid', 'a time must be a non-negative integer (epoch ms)');
  return at;
}

const validValue = (v: unknown): v is string => typeof v === 'string' && Buffer.byteLength(v, 'utf8') <= MAX_TWIN_VALUE_BYTES;

/** Open (or create) DIR/twins.db. */
export function openTwinStore(opts: TwinStoreOptions): TwinStore {
  try {
    ensurePrivateDir(opts.dir);
  } catch (e) {
    throw new TwinStoreError('twin-store/io', e instanceof Error ? e.message : `cannot create ${opts.dir}`, { cause: e });
  }
  const db = opts.files.openDatabase(join(opts.dir, TWIN_DB_FILE), {
    label: 'device twin store',
    migrations: MIGRATIONS,
    // Twins are telemetry: a power cut may lose the last changes (WAL + NORMAL stays consistent), which the
    // devices report again; every device message writes here, so no fsync per message.
    synchronous: 'NORMAL',
    error: (failure, message, o) => new TwinStoreError(`twin-store/${failure}`, message, o),
  });
  try {
    return new SqliteTwinStore(db, opts.clock);
  } catch (e) {
    db.close();
    throw storeFailure(e, 'be opened');
  }
}

class SqliteTwinStore implements TwinStore {
  readonly #db: StateDatabase;
  readonly #clock: Clock;
  readonly #stmt;
  #closed = false;

  constructor(db: StateDatabase, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#stmt = {
      getDevice: db.prepare('SELECT device, last_seen, state, state_at, seq, reported_seq, reported_phase FROM devices WHERE device = ?'),
      getTwins: db.prepare('SELECT property, value, at FROM twins WHERE device = ? ORDER BY property'),
      countDevices: db.prepare('SELECT COUNT(*) AS n FROM devices'),
      countTwins: db.prepare('SELECT COUNT(*) AS n FROM twins WHERE device = ?'),
      hasTwin: db.prepare('SELECT 1 AS x FROM twins WHERE device = ? AND property = ?'),
      insertDevice: db.prepare('INSERT INTO devices (device, last_seen, state, state_at, seq, reported_seq, reported_phase, created_at) VALUES (?, ?, NULL, NULL, 0, 0, NULL, ?)'),
      touch: db.prepare('UPDATE devices SET last_seen = MAX(last_seen, ?), seq = seq + ? WHERE device = ?'),
      setState: db.prepare('UPDATE devices SET state = ?, state_at = ?, last_seen = MAX(last_seen, ?), seq = seq + 1 WHERE device = ?'),
      bump: db.prepare('UPDATE devices SET seq = seq + 1 WHERE device = ?'),
      seqOf: db.prepare('SELECT seq FROM devices WHERE device = ?'),
      putTwin: db.prepare(
        'INSERT INTO twins (device, property, value, at) VALUES (?, ?, ?, ?) ON CONFLICT (device, property) DO UPDATE SET value = excluded.value, at = excluded.at',
      ),
      markReported: db.prepare('UPDATE devices SET reported_seq = MAX(reported_seq, MIN(?, seq)), reported_phase = ? WHERE device = ?'),
      listTwinNames: db.prepare('SELECT property FROM twins WHERE device = ?'),
      deleteTwin: db.prepare('DELETE FROM twins WHERE device = ? AND property = ?'),
      summaries: db.prepare('SELECT device, seq, reported_seq, reported_phase FROM devices ORDER BY device LIMIT ?'),
      forgetTwins: db.prepare('DELETE FROM twins WHERE device = ?'),
      forgetDevice: db.prepare('DELETE FROM devices WHERE device = ?'),
    };
  }

  #guard<T>(what: string, fn: () => T): T {
    if (this.#closed) fail('twin-store/io', 'the device twin store is closed');
    try {
      return fn();
    } catch (e) {
      throw storeFailure(e, what);
    }
  }

  /** Create the device's row if absent (inside a transaction); `twin-store/full` past MAX_TWIN_DEVICES. */
  #ensureDevice(device: string, at: number): void {
    if (this.#stmt.getDevice.get(device) !== undefined) return;
    const n = (this.#stmt.countDevices.get() as { n: number }).n;
    if (n >= MAX_TWIN_DEVICES) fail('twin-store/full', `the device twin store holds at most ${MAX_TWIN_DEVICES} devices`);
    this.#stmt.insertDevice.run(device, at, this.#clock.now());
  }

  #seq(device: string): number {
    return (this.#stmt.seqOf.get(device) as { seq: number }).seq;
  }

  get(device: string): DeviceTwinRecord | undefined {
    if (!isDeviceName(device)) return undefined;
    return this.#guard('read a device twin', () => {
      const row = this.#stmt.getDevice.get(device) as DeviceRow | undefined;
      if (row === undefined) return undefined;
      const reported = new Map<string, StoredTwinValue>();
      for (const t of this.#stmt.getTwins.all(device) as TwinRow[]) {
        // a row that is not what this store writes (the file was edited) is left out
        if (typeof t.property === 'string' && DEVICE_PROPERTY_NAME_PATTERN.test(t.property) && validValue(t.value) && isTime(t.at)) {
          reported.set(t.property, { value: t.value, at: t.at });
        }
      }
      const seq = isTime(row.seq) ? row.seq : 0;
      const reportedSeq = isTime(row.reported_seq) ? row.reported_seq : 0;
      return {
        device,
        reported,
        lastSeen: isTime(row.last_seen) ? row.last_seen : 0,
        state: typeof row.state === 'string' && DEVICE_STATE_PATTERN.test(row.state) ? row.state : undefined,
        stateAt: isTime(row.state_at) ? row.state_at : undefined,
        seq,
        reportedSeq,
        dirty: seq > reportedSeq,
        reportedPhase: typeof row.reported_phase === 'string' && PHASE_PATTERN.test(row.reported_phase) ? row.reported_phase : undefined,
      };
    });
  }

  putReported(device: string, values: ReadonlyArray<{ readonly name: string; readonly value: string }>, at: number): number {
    checkDevice(device);
    checkTime(at);
    if (!Array.isArray(values) || values.length > MAX_DEVICE_PROPERTIES) fail('twin-store/invalid', `at most ${MAX_DEVICE_PROPERTIES} values at once`);
    for (const v of values) {
      if (typeof v !== 'object' || v === null || typeof v.name !== 'string' || !DEVICE_PROPERTY_NAME_PATTERN.test(v.name)) fail('twin-store/invalid', 'invalid property name');
      if (!validValue(v.value)) fail('twin-store/invalid', `a twin value is a string of at most ${MAX_TWIN_VALUE_BYTES} bytes`);
    }
    return this.#guard('store reported values', () =>
      this.#db
        .transaction((): number => {
          this.#ensureDevice(device, at);
          let fresh = 0;
          for (const v of values) if (this.#stmt.hasTwin.get(device, v.name) === undefined) fresh++;
          if (fresh > 0) {
            const n = (this.#stmt.countTwins.get(device) as { n: number }).n;
            if (n + fresh > MAX_DEVICE_PROPERTIES) fail('twin-store/full', `a device has at most ${MAX_DEVICE_PROPERTIES} properties`);
          }
          for (const v of values) this.#stmt.putTwin.run(device, v.name, v.value, at);
          this.#stmt.touch.run(at, 1, device);
          return this.#seq(device);
        })
        .immediate(),
    );
  }

  touch(device: string, at: number, options?: TouchOptions): number {
    checkDevice(device);
    checkTime(at);
    return this.#guard('record a device as seen', () =>
      this.#db
        .transaction((): number => {
          this.#ensureDevice(device, at);
          this.#stmt.touch.run(at, options?.dirty === true ? 1 : 0, device);
          return this.#seq(device);
        })
        .immediate(),
    );
  }

  setState(device: string, state: string, at: number): number {
    checkDevice(device);
    checkTime(at);
    if (typeof state !== 'string' || !DEVICE_STATE_PATTERN.test(state)) fail('twin-store/invalid', 'a device state is a word of 1-32 of [A-Za-z0-9_.-]');
    return this.#guard('store a device state', () =>
      this.#db
        .transaction((): number => {
          this.#ensureDevice(device, at);
          this.#stmt.setState.run(state, at, at, device);
          return this.#seq(device);
        })
        .immediate(),
    );
  }

  markReported(device: string, seq: number, phase: string): boolean {
    checkDevice(device);
    if (!isTime(seq)) fail('twin-store/invalid', 'seq must be a non-negative integer');
    if (typeof phase !== 'string' || !PHASE_PATTERN.test(phase)) fail('twin-store/invalid', 'invalid phase');
    return this.#guard('mark a device twin reported', () => this.#stmt.markReported.run(seq, phase, device).changes > 0);
  }

  retainProperties(device: string, keep: readonly string[]): number {
    checkDevice(device);
    if (!Array.isArray(keep)) fail('twin-store/invalid', 'keep must be a list of property names');
    const kept = new Set(keep);
    return this.#guard('drop reported values', () =>
      this.#db
        .transaction((): number => {
          let dropped = 0;
          for (const r of this.#stmt.listTwinNames.all(device) as Array<{ property: string }>) {
            if (kept.has(r.property)) continue;
            dropped += this.#stmt.deleteTwin.run(device, r.property).changes;
          }
          if (dropped > 0) this.#stmt.bump.run(device);
          return dropped;
        })
        .immediate(),
    );
  }

  devices(): TwinDeviceSummary[] {
    const rows = this.#guard('list devices', () => this.#stmt.summaries.all(MAX_TWIN_DEVICES) as Array<{ device: string; seq: number; reported_seq: number; reported_phase: string | null }>);
    const out: TwinDeviceSummary[] = [];
    for (const r of rows) {
      if (!isDeviceName(r.device)) continue;
      out.push({
        device: r.device,
        dirty: isTime(r.seq) && isTime(r.reported_seq) && r.seq > r.reported_seq,
        reportedPhase: typeof r.reported_phase === 'string' && PHASE_PATTERN.test(r.reported_phase) ? r.reported_phase : undefined,
      });
    }
    return out;
  }

  forget(device: string): boolean {
    if (!isDeviceName(device)) return false;
    return this.#guard('forget a device', () =>
      this.#db
        .transaction((): boolean => {
          const t = this.#stmt.forgetTwins.run(device).changes;
          const d = this.#stmt.forgetDevice.run(device).changes;
          return t + d > 0;
        })
        .immediate(),
    );
  }

  count(): number {
    return this.#guard('count devices', () => (this.#stmt.countDevices.get() as { n: number }).n);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#db.open) this.#db.close();
  }
}
