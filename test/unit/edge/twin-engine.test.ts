/**
 * The device twin engine (src/edge/devices/twins.ts) with a fake EventBus (the TwinBus port), an in-memory
 * DeviceDirectory, a real twin store (SQLite in a temp dir) and a ManualClock with fake timers.
 * Contract #6 "Twins"; topics and shapes after KubeEdge (kubeedge.md §6, dttype/types.go).
 */
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { hostStateFiles } from '../../../src/cli/host/index.js';
import type { DeviceDirectory, DeviceDirectoryChange, LocalDevice } from '../../../src/edge/devices/directory.js';
import { openTwinStore, type TwinStore } from '../../../src/edge/devices/twin-store.js';
import {
  DEFAULT_TWIN_LOGS_PER_MINUTE,
  MAX_TWIN_INFLIGHT_PUBLISHES,
  TWIN_TOPIC_FILTERS,
  createTwinEngine,
  twinStatusDetail,
  type DeviceStatusReport,
  type TwinBus,
  type TwinBusMessage,
  type TwinEngine,
  type TwinEngineOptions,
} from '../../../src/edge/devices/twins.js';
import { ManualClock } from '../../../src/identity/index.js';
import { MAX_DEVICE_PROPERTIES, MAX_HUB_STATUS_DETAIL_BYTES, statusDetailProblem, twinTopics, type DeviceModelSpec, type DeviceSpec } from '../../../src/protocol/index.js';
import { FakeTimers } from '../../helpers/fake-timers.js';
import { tempDir } from '../../helpers/index.js';

const T0 = 1_700_000_000_000;
const DEV = 'default/thermo-1';
const OTHER = 'default/thermo-2';

const model: DeviceModelSpec = {
  properties: [
    { name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly', minimum: -50, maximum: 150 },
    { name: 'setpoint', type: 'FLOAT', accessMode: 'ReadWrite' },
    { name: 'mode', type: 'STRING', accessMode: 'ReadWrite' },
    { name: 'serial', type: 'STRING', accessMode: 'ReadOnly' },
  ],
  factoryCAs: [],
};

function device(fullName: string, desired: Record<string, string> = { setpoint: '21.5' }, version = 1, m: DeviceModelSpec | null = model): LocalDevice {
  const [namespace, name] = fullName.split('/') as [string, string];
  const spec: DeviceSpec = {
    deviceModelRef: { name: 'thermometer' },
    nodeName: 'edge-1',
    properties: Object.entries(desired).map(([n, value]) => ({ name: n, desired: { value } })),
  };
  return { fullName, namespace, name, spiffeId: `spiffe://example.org/edgeward/device/${fullName}`, version, spec, model: m ?? undefined, revokedBefore: undefined };
}

class FakeDirectory implements DeviceDirectory {
  readonly devices = new Map<string, LocalDevice>();
  readonly listeners = new Set<(c: DeviceDirectoryChange) => void>();
  get(fullName: string): LocalDevice | undefined {
    return this.devices.get(fullName);
  }
  list(): LocalDevice[] {
    return [...this.devices.values()];
  }
  onChange(l: (c: DeviceDirectoryChange) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  put(d: LocalDevice): void {
    this.devices.set(d.fullName, d);
    for (const l of this.listeners) l({ fullName: d.fullName, op: 'put' });
  }
  delete(fullName: string): void {
    this.devices.delete(fullName);
    for (const l of this.listeners) l({ fullName, op: 'delete' });
  }
}

interface Published {
  topic: string;
  qos: 0 | 1;
  json: Record<string, unknown>;
}

class FakeBus implements TwinBus {
  readonly handlers = new Map<string, (m: TwinBusMessage) => void>();
  readonly published: Published[] = [];
  publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<void> {
    this.published.push({ topic, qos, json: JSON.parse(payload.toString('utf8')) as Record<string, unknown> });
    return Promise.resolve();
  }
  subscribe(filter: string, handler: (m: TwinBusMessage) => void): () => void {
    this.handlers.set(filter, handler);
    return () => this.handlers.delete(filter);
  }
  /** A device (`from`, as the broker authenticated it) publishes on `topicDevice`'s topic. */
  send(kind: 'update' | 'get' | 'state', topicDevice: string, payload: unknown, publisher: string | null = topicDevice): void {
    const from = publisher ?? undefined; // null: not a device
    const [namespace, name] = topicDevice.split('/') as [string, string];
    const t = twinTopics({ namespace, name });
    const topic = kind === 'update' ? t.update : kind === 'get' ? t.get : t.stateUpdate;
    const filter = TWIN_TOPIC_FILTERS[kind === 'state' ? 'stateUpdate' : kind];
    const handler = this.handlers.get(filter);
    if (handler === undefined) throw new Error(`nobody subscribed to ${filter}`);
    const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
    const msg: TwinBusMessage = { topic, payload: bytes, clientId: from ?? 'spiffe://example.org/app', spiffeId: from === undefined ? 'spiffe://example.org/app' : `spiffe://example.org/edgeward/device/${from}`, device: from };
    handler(msg);
  }
  on(topic: string): Published[] {
    return this.published.filter((p) => p.topic === topic);
  }
}

interface LogLine {
  obj: Record<string, unknown>;
  msg: string;
}

interface Rig {
  dir: string;
  clock: ManualClock;
  timers: FakeTimers;
  bus: FakeBus;
  directory: FakeDirectory;
  store: TwinStore;
  engine: TwinEngine;
  reports: DeviceStatusReport[];
  logs: LogLine[];
  events(name: string): LogLine[];
  failReports: Error | undefined;
  /** Close engine and store, then open both again over the same directory (a process restart). */
  restart(): void;
}

async function rig(opts: Partial<Pick<TwinEngineOptions, 'flushIntervalMs' | 'lastSeenReportMs'>> = {}, devices: LocalDevice[] = [device(DEV), device(OTHER)]): Promise<Rig> {
  const dir = join(await tempDir(), 'data', 'devices');
  const clock = new ManualClock(T0);
  const timers = new FakeTimers(clock);
  const directory = new FakeDirectory();
  for (const d of devices) directory.devices.set(d.fullName, d);
  const logs: LogLine[] = [];
  const logger = { info: (obj: Record<string, unknown>, msg: string) => logs.push({ obj, msg }), warn: (obj: Record<string, unknown>, msg: string) => logs.push({ obj, msg }) };
  const r = {
    dir,
    clock,
    timers,
    directory,
    logs,
    reports: [] as DeviceStatusReport[],
    failReports: undefined as Error | undefined,
    events: (name: string) => logs.filter((l) => l.obj['event'] === name),
  } as Rig;
  const make = (): void => {
    r.bus = new FakeBus();
    r.store = openTwinStore({ dir, files: hostStateFiles, clock });
    r.engine = createTwinEngine({
      bus: r.bus,
      directory,
      store: r.store,
      report: (s, o) => {
        expect(o).toEqual({ replace: true });
        if (r.failReports !== undefined) throw r.failReports;
        // what EdgeHub.reportStatus would refuse must never be produced
        expect(statusDetailProblem(s.detail)).toBeUndefined();
        r.reports.push(structuredClone(s));
      },
      clock,
      timers,
      logger,
      ...opts,
    });
    r.engine.start();
  };
  r.restart = () => {
    r.engine.close();
    r.store.close();
    for (const id of [...timers.pending.keys()]) timers.clearTimeout(id);
    make();
  };
  make();
  onTestFinishedClose(r);
  return r;
}

function onTestFinishedClose(r: Rig): void {
  onTestFinished(() => {
    r.engine.close();
    r.store.close();
  });
}

const twinUpdate = (values: Record<string, string>, eventId = 'e-1'): unknown => ({
  event_id: eventId,
  timestamp: T0,
  twin: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, { actual: { value: v }, metadata: { type: 'Updated' } }])),
});

const topicsOf = (fullName: string): ReturnType<typeof twinTopics> => {
  const [namespace, name] = fullName.split('/') as [string, string];
  return twinTopics({ namespace, name });
};

describe('twin/update', () => {
  it('stores the reported values, answers on twin/update/result, and publishes a delta for ReadWrite desired ≠ reported', async () => {
    const r = await rig();
    r.clock.advance(250);
    r.bus.send('update', DEV, twinUpdate({ temperature: '20.5' }, 'ev-42'));
    const rec = r.store.get(DEV);
    expect(rec?.reported.get('temperature')).toEqual({ value: '20.5', at: T0 + 250 });
    expect(rec?.lastSeen).toBe(T0 + 250);
    const t = topicsOf(DEV);
    expect(r.bus.on(t.updateResult)).toEqual([{ topic: t.updateResult, qos: 1, json: { event_id: 'ev-42', timestamp: T0 + 250 } }]);
    // setpoint (ReadWrite, desired 21.5) was never reported: the delta carries it (KubeEdge DeviceTwinDelta)
    const deltas = r.bus.on(t.updateDelta);
    expect(deltas).toHaveLength(1);
    expect(deltas[0]?.qos).toBe(1);
    expect(deltas[0]?.json).toMatchObject({ timestamp: T0 + 250, twin: { setpoint: { expected: { value: '21.5' } } }, delta: { setpoint: '21.5' } });
    expect(typeof deltas[0]?.json['event_id']).toBe('string');
    // nothing for the other device
    expect(r.bus.published.every((p) => p.topic.startsWith('$hw/events/device/default/thermo-1/'))).toBe(true);
  });

  it('no delta once the device reports the desired value (numbers compared as numbers)', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ setpoint: '21.50', temperature: '19' }));
    expect(r.bus.on(topicsOf(DEV).updateDelta)).toHaveLength(0);
    r.bus.send('update', DEV, twinUpdate({ setpoint: '20' }));
    const d = r.bus.on(topicsOf(DEV).updateDelta);
    expect(d).toHaveLength(1);
    expect(d[0]?.json).toMatchObject({ delta: { setpoint: '21.5' }, twin: { setpoint: { expected: { value: '21.5' }, actual: { value: '20' } } } });
  });

  it('refuses an invalid payload: result with code 400 and the error code, security.twin_invalid_payload, nothing stored', async () => {
    const r = await rig();
    r.bus.send('update', DEV, { event_id: 'bad-1', twin: { temperature: { actual: { value: '999' } } } });
    r.bus.send('update', DEV, { event_id: 'bad-2', twin: { humidity: { actual: { value: '1' } } } });
    r.bus.send('update', DEV, Buffer.from('\u0000garbage'));
    const results = r.bus.on(topicsOf(DEV).updateResult).map((p) => p.json);
    expect(results[0]).toMatchObject({ event_id: 'bad-1', code: 400, error: { code: 'twin-message/invalid-value' } });
    expect(results[1]).toMatchObject({ event_id: 'bad-2', code: 400, error: { code: 'twin-message/unknown-property' } });
    expect(results[2]).toMatchObject({ event_id: '', code: 400, error: { code: 'twin-message/malformed' } });
    expect(r.store.get(DEV)?.reported.size).toBe(0);
    expect(r.store.get(DEV)?.lastSeen).toBe(T0); // but it was seen
    const ev = r.events('security.twin_invalid_payload');
    expect(ev).toHaveLength(3);
    expect(ev[0]?.obj).toMatchObject({ device: DEV, topic: 'twin/update', code: 'twin-message/invalid-value' });
    expect(r.bus.on(topicsOf(DEV).updateDelta)).toHaveLength(0);
  });

  it(`logs invalid payloads at most ${DEFAULT_TWIN_LOGS_PER_MINUTE} times per device per minute, then says how many were suppressed`, async () => {
    const r = await rig();
    for (let i = 0; i < 50; i++) r.bus.send('update', DEV, 'nope');
    expect(r.events('security.twin_invalid_payload')).toHaveLength(DEFAULT_TWIN_LOGS_PER_MINUTE);
    r.bus.send('update', OTHER, 'nope'); // another device has its own budget
    expect(r.events('security.twin_invalid_payload')).toHaveLength(DEFAULT_TWIN_LOGS_PER_MINUTE + 1);
    r.clock.advance(60_000);
    r.bus.send('update', DEV, 'nope');
    const ev = r.events('security.twin_invalid_payload');
    expect(ev).toHaveLength(DEFAULT_TWIN_LOGS_PER_MINUTE + 2);
    expect(ev.at(-1)?.obj).toMatchObject({ device: DEV, suppressed: 50 - DEFAULT_TWIN_LOGS_PER_MINUTE });
  });

  it('a device whose model is not on this node gets a 404 result', async () => {
    const r = await rig({}, [device(DEV, {}, 1, null)]);
    r.bus.send('update', DEV, twinUpdate({ temperature: '1' }, 'm-1'));
    expect(r.bus.on(topicsOf(DEV).updateResult)[0]?.json).toMatchObject({ event_id: 'm-1', code: 404, error: { code: 'twin/no-model' } });
  });
});

describe('identity: the broker-authenticated device, never the topic', () => {
  it('drops a message on another device\'s topic with security.twin_spoofed (defence in depth behind the ACL)', async () => {
    const r = await rig();
    r.bus.send('update', OTHER, twinUpdate({ temperature: '99' }), DEV);
    r.bus.send('get', OTHER, {}, DEV);
    r.bus.send('state', OTHER, { state: 'offline' }, DEV);
    expect(r.bus.published).toEqual([]);
    expect(r.store.get(OTHER)).toBeUndefined();
    expect(r.store.get(DEV)).toBeUndefined();
    const ev = r.events('security.twin_spoofed');
    expect(ev).toHaveLength(3);
    expect(ev[0]?.obj).toMatchObject({ reason: 'other-device', device: OTHER, publisher: DEV, spiffe_id: `spiffe://example.org/edgeward/device/${DEV}` });
  });

  it('drops a message that no device published (another workload of the trust domain)', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ temperature: '1' }), null);
    expect(r.bus.published).toEqual([]);
    expect(r.store.get(DEV)).toBeUndefined();
    expect(r.events('security.twin_spoofed')[0]?.obj).toMatchObject({ reason: 'not-a-device', device: DEV });
  });

  it('drops messages of a device that is not (or no longer) on this node', async () => {
    const r = await rig({}, [device(DEV)]);
    r.bus.send('update', OTHER, twinUpdate({ temperature: '1' }));
    expect(r.bus.published).toEqual([]);
    expect(r.store.get(OTHER)).toBeUndefined();
    expect(r.events('edge.twin_unknown_device')).toHaveLength(1);
  });
});

describe('desired values from the cloud', () => {
  it('a changed desired value publishes a delta (also for properties never reported); other puts do not', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ setpoint: '21.5' }));
    r.bus.published.length = 0;
    r.directory.put(device(DEV, { setpoint: '23', mode: 'eco' }, 2));
    const d = r.bus.on(topicsOf(DEV).updateDelta);
    expect(d).toHaveLength(1);
    expect(d[0]?.json).toMatchObject({ delta: { setpoint: '23', mode: 'eco' }, twin: { setpoint: { expected: { value: '23' }, actual: { value: '21.5' } }, mode: { expected: { value: 'eco' } } } });
    // same desired values, a new version (e.g. revokedBefore changed): no delta
    r.directory.put(device(DEV, { setpoint: '23', mode: 'eco' }, 3));
    expect(r.bus.on(topicsOf(DEV).updateDelta)).toHaveLength(1);
    // a device never seen still gets its delta published (nobody may be subscribed yet: harmless)
    r.directory.put(device(OTHER, { setpoint: '5' }, 2));
    expect(r.bus.on(topicsOf(OTHER).updateDelta)[0]?.json).toMatchObject({ delta: { setpoint: '5' } });
  });

  it('desired values of ReadOnly properties and values invalid for the model are not sent', async () => {
    const r = await rig();
    r.directory.put(device(DEV, { serial: 'X', setpoint: 'hot' }, 2));
    expect(r.bus.on(topicsOf(DEV).updateDelta)).toHaveLength(0);
    expect(r.events('edge.twin_desired_invalid')[0]?.obj).toMatchObject({ device: DEV, properties: ['setpoint'] });
  });

  it('twin/get answers with the twin document: expected (desired) and actual (reported) per property', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ temperature: '18' }));
    r.clock.advance(10);
    r.bus.send('get', DEV, { event_id: 'g-1' });
    const res = r.bus.on(topicsOf(DEV).getResult);
    expect(res).toHaveLength(1);
    expect(res[0]?.json).toEqual({
      event_id: 'g-1',
      timestamp: T0 + 10,
      twin: {
        temperature: { actual: { value: '18', metadata: { timestamp: T0 } }, metadata: { type: 'float' } },
        setpoint: { expected: { value: '21.5' }, metadata: { type: 'float' } },
        mode: { metadata: { type: 'string' } },
        serial: { metadata: { type: 'string' } },
      },
    });
    r.bus.send('get', DEV, Buffer.alloc(0)); // mosquitto_pub -n
    expect(r.bus.on(topicsOf(DEV).getResult)).toHaveLength(2);
  });

  it('a deleted device loses its twin rows; a model change drops reported values of removed properties', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ temperature: '18', serial: 'A1' }));
    r.bus.send('update', OTHER, twinUpdate({ temperature: '19' }));
    const smaller: DeviceModelSpec = { properties: model.properties.filter((p) => p.name !== 'serial'), factoryCAs: [] };
    r.directory.put(device(DEV, { setpoint: '21.5' }, 2, smaller));
    expect([...(r.store.get(DEV)?.reported.keys() ?? [])]).toEqual(['temperature']);
    r.directory.delete(OTHER);
    expect(r.store.get(OTHER)).toBeUndefined();
    r.timers.advance(1000);
    expect(r.reports.map((s) => s.name)).toEqual([DEV]);
  });
});

describe('reporting to the cloud', () => {
  it('coalesces: many updates within the flush interval make one report carrying the latest values', async () => {
    const r = await rig({ flushIntervalMs: 1000 });
    for (let i = 0; i < 10; i++) {
      r.bus.send('update', DEV, twinUpdate({ temperature: String(20 + i) }));
      r.timers.advance(90);
    }
    expect(r.reports).toHaveLength(0);
    r.timers.advance(100);
    expect(r.reports).toHaveLength(1);
    expect(r.reports[0]).toEqual({
      kind: 'Device',
      name: DEV,
      phase: 'Online',
      observedVersion: 1,
      detail: { twins: { temperature: { value: '29', at: T0 + 810 } }, lastSeen: T0 + 810 },
    });
    r.timers.advance(10_000);
    expect(r.reports).toHaveLength(1); // nothing changed
    // at most one report per device per interval, also under a steady stream
    for (let i = 0; i < 30; i++) {
      r.bus.send('update', DEV, twinUpdate({ temperature: String(i) }));
      r.timers.advance(100);
    }
    r.timers.advance(1000);
    const at = r.reports.slice(1).map((s) => (s.detail['twins'] as Record<string, { at: number }>)['temperature']?.at ?? 0);
    expect(r.reports.length).toBeGreaterThanOrEqual(3);
    expect(r.reports.length).toBeLessThanOrEqual(4);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(900);
  });

  it('state/update is stored and reported; lastSeen alone is reported only when it is old', async () => {
    const r = await rig({ lastSeenReportMs: 60_000 });
    r.bus.send('state', DEV, { state: 'online' });
    r.timers.advance(1000);
    expect(r.reports.at(-1)?.detail).toEqual({ twins: {}, lastSeen: T0, state: 'online' });
    r.bus.send('get', DEV, {});
    r.timers.advance(1000);
    expect(r.reports).toHaveLength(1);
    r.clock.advance(60_000);
    r.bus.send('get', DEV, {});
    r.timers.advance(1000);
    expect(r.reports).toHaveLength(2);
    expect(r.reports[1]?.detail['lastSeen']).toBe(T0 + 62_000);
  });

  it('deviceConnected / deviceDisconnected set the phase (Online / Offline) and trigger a report', async () => {
    const r = await rig();
    r.engine.deviceConnected(DEV);
    r.timers.advance(1000);
    expect(r.reports.map((s) => s.phase)).toEqual(['Online']);
    r.bus.send('update', DEV, twinUpdate({ temperature: '5' }));
    r.engine.deviceDisconnected(DEV);
    r.timers.advance(1000);
    expect(r.reports.at(-1)).toMatchObject({ phase: 'Offline', detail: { twins: { temperature: { value: '5' } } } });
    // hooks wired: a message alone does not make a device Online
    r.bus.send('update', DEV, twinUpdate({ temperature: '6' }));
    r.timers.advance(1000);
    expect(r.reports.at(-1)?.phase).toBe('Offline');
    // two connections (client id NS/NAME and the SPIFFE ID): Offline only when both closed
    r.engine.deviceConnected(DEV);
    r.engine.deviceConnected(DEV);
    r.engine.deviceDisconnected(DEV);
    r.timers.advance(1000);
    expect(r.reports.at(-1)?.phase).toBe('Online');
    r.engine.deviceDisconnected(DEV);
    r.timers.advance(1000);
    expect(r.reports.at(-1)?.phase).toBe('Offline');
    // unknown devices are ignored
    r.engine.deviceConnected('default/nope');
    r.engine.deviceConnected('not a name');
    expect(r.engine.stats().connected).toBe(0);
  });

  it('a report that throws (outbox full) is logged and the device stays dirty until a later flush succeeds', async () => {
    const r = await rig();
    r.failReports = Object.assign(new Error('the status outbox holds 100000 unacknowledged entries'), { code: 'edge-store/outbox-full' });
    r.bus.send('update', DEV, twinUpdate({ temperature: '7' }));
    r.timers.advance(1000);
    expect(r.reports).toHaveLength(0);
    expect(r.events('edge.twin_report_failed')[0]?.obj).toMatchObject({ device: DEV, code: 'edge-store/outbox-full' });
    expect(r.store.get(DEV)?.dirty).toBe(true);
    expect(r.engine.stats().dirty).toBe(1);
    r.failReports = undefined;
    r.timers.advance(1000);
    expect(r.reports).toHaveLength(1);
    expect(r.store.get(DEV)?.dirty).toBe(false);
    expect(r.engine.stats().dirty).toBe(0);
  });

  it('a status the hub refuses as invalid (a permanent error) is dropped, not retried ahead of the other devices', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ temperature: '7' }));
    r.bus.send('update', OTHER, twinUpdate({ temperature: '8' }));
    r.failReports = Object.assign(new Error('invalid status'), { code: 'edge-hub/invalid-status' });
    r.timers.advance(1000);
    expect(r.events('edge.twin_report_refused').map((l) => l.obj['device'])).toEqual([DEV, OTHER]);
    expect(r.engine.stats().dirty).toBe(0);
    r.failReports = undefined;
    r.bus.send('update', OTHER, twinUpdate({ temperature: '9' }));
    r.timers.advance(1000);
    expect(r.reports.map((x) => x.name)).toEqual([OTHER]);
  });

  it(`keeps the detail within ${MAX_HUB_STATUS_DETAIL_BYTES} bytes: the oldest values are left out and the detail says so`, () => {
    const reported = new Map<string, { value: string; at: number }>();
    for (let i = 0; i < MAX_DEVICE_PROPERTIES; i++) reported.set(`p${String(i).padStart(3, '0')}`, { value: 'v'.repeat(1024), at: T0 + i });
    const d = twinStatusDetail({ reported, lastSeen: T0 + 500, state: 'online' });
    expect(Buffer.byteLength(JSON.stringify(d))).toBeLessThanOrEqual(MAX_HUB_STATUS_DETAIL_BYTES);
    expect(statusDetailProblem(d)).toBeUndefined();
    const kept = Object.keys(d['twins'] as object);
    expect(d).toMatchObject({ truncated: true, omitted: MAX_DEVICE_PROPERTIES - kept.length, lastSeen: T0 + 500, state: 'online' });
    expect(kept.length).toBeGreaterThan(0);
    expect(kept).toContain('p127'); // the newest
    expect(kept).not.toContain('p000'); // the oldest
    // small twins are not truncated
    expect(twinStatusDetail({ reported: new Map([['a', { value: '1', at: 1 }]]), lastSeen: 2, state: undefined })).toEqual({ twins: { a: { value: '1', at: 1 } }, lastSeen: 2 });
  });

  it('a device with large values is reported with a truncated detail the hub accepts', async () => {
    const big: DeviceModelSpec = { properties: Array.from({ length: 20 }, (_, i) => ({ name: `s${i}`, type: 'STRING' as const, accessMode: 'ReadOnly' as const })), factoryCAs: [] };
    const r = await rig({}, [device(DEV, {}, 1, big)]);
    for (let i = 0; i < 20; i++) {
      r.bus.send('update', DEV, twinUpdate({ [`s${i}`]: 'x'.repeat(1000) }));
      r.clock.advance(1);
    }
    r.timers.advance(1000);
    expect(r.reports).toHaveLength(1);
    expect(r.reports[0]?.detail).toMatchObject({ truncated: true });
    expect(Object.keys(r.reports[0]?.detail['twins'] as object)).toContain('s19');
  });
});

describe('restarts', () => {
  it('reported values survive a restart (the store is reopened) and are served on twin/get', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ temperature: '22.25', setpoint: '21.5' }));
    r.timers.advance(1000);
    expect(r.reports).toHaveLength(1);
    r.restart();
    expect(r.store.get(DEV)?.reported.get('temperature')).toEqual({ value: '22.25', at: T0 });
    r.bus.send('get', DEV, { event_id: 'after' });
    expect(r.bus.on(topicsOf(DEV).getResult)[0]?.json).toMatchObject({ event_id: 'after', twin: { temperature: { actual: { value: '22.25' } }, setpoint: { expected: { value: '21.5' }, actual: { value: '21.5' } } } });
  });

  it('an unreported change is reported after a restart; a device last reported Online is reported Offline', async () => {
    const r = await rig();
    r.engine.deviceConnected(DEV);
    r.bus.send('update', DEV, twinUpdate({ temperature: '1' }));
    r.timers.advance(1000);
    expect(r.reports.at(-1)?.phase).toBe('Online');
    r.bus.send('update', DEV, twinUpdate({ temperature: '2' }));
    r.bus.send('update', OTHER, twinUpdate({ temperature: '3' }));
    r.restart(); // before the flush
    expect(r.reports).toHaveLength(1);
    r.timers.advance(1000);
    const after = r.reports.slice(1);
    expect(after.map((s) => [s.name, s.phase]).sort()).toEqual([
      [DEV, 'Offline'],
      [OTHER, 'Offline'],
    ]);
    expect(after.find((s) => s.name === DEV)?.detail['twins']).toEqual({ temperature: { value: '2', at: T0 + 1000 } });
  });

  it('twins of devices that left the node while the agent was down are forgotten at start', async () => {
    const r = await rig();
    r.bus.send('update', OTHER, twinUpdate({ temperature: '3' }));
    r.directory.devices.delete(OTHER); // gone without a change event reaching this engine
    r.restart();
    expect(r.store.get(OTHER)).toBeUndefined();
    expect(r.store.count()).toBe(0);
  });

  it(`bounds publishes in flight: past ${MAX_TWIN_INFLIGHT_PUBLISHES} replies are dropped (logs rate-limited), a failed publish is logged`, async () => {
    const r = await rig();
    const pending: Array<(e?: Error) => void> = [];
    r.bus.publish = () => new Promise<void>((resolve, reject) => pending.push((e) => (e === undefined ? resolve() : reject(e))));
    for (let i = 0; i < MAX_TWIN_INFLIGHT_PUBLISHES + 10; i++) r.bus.send('get', DEV, {});
    expect(pending).toHaveLength(MAX_TWIN_INFLIGHT_PUBLISHES);
    expect(r.engine.stats()).toMatchObject({ inflightPublishes: MAX_TWIN_INFLIGHT_PUBLISHES, droppedPublishes: 10 });
    expect(r.events('edge.twin_publish_dropped')).toHaveLength(DEFAULT_TWIN_LOGS_PER_MINUTE);
    pending[0]?.(Object.assign(new Error('closed'), { code: 'eventbus/closed' }));
    for (const p of pending.slice(1)) p();
    await new Promise((res) => setImmediate(res));
    expect(r.engine.stats().inflightPublishes).toBe(0);
    expect(r.events('edge.twin_publish_failed')[0]?.obj).toMatchObject({ code: 'eventbus/closed' });
  });

  it('close unsubscribes and stops reporting', async () => {
    const r = await rig();
    r.bus.send('update', DEV, twinUpdate({ temperature: '3' }));
    r.engine.close();
    expect(r.bus.handlers.size).toBe(0);
    expect(r.directory.listeners.size).toBe(0);
    expect(r.timers.pending.size).toBe(0);
    expect(r.store.get(DEV)?.dirty).toBe(true); // reported after the next start
  });
});
