/**
 * The twin payload codec (src/edge/devices/twin-messages.ts): strict, bounded decoding of what devices publish
 * on their KubeEdge twin topics (kubeedge.md §6; KubeEdge edge/pkg/devicetwin/dttype/types.go DeviceTwinUpdate,
 * MsgTwin, TwinValue), and the shapes the edge publishes back (DeviceTwinDelta, DeviceTwinResult, Result).
 */
import { describe, expect, it } from 'vitest';
import {
  MAX_TWIN_MESSAGE_BYTES,
  TwinMessageError,
  decodeStateUpdate,
  decodeTwinGet,
  decodeTwinUpdate,
  encodeTwinDelta,
  encodeTwinGetResult,
  encodeTwinResult,
  peekTwinEventId,
  type TwinMessageErrorCode,
} from '../../../src/edge/devices/twin-messages.js';
import type { DeviceModelSpec } from '../../../src/protocol/index.js';

const model: DeviceModelSpec = {
  properties: [
    { name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly', minimum: -50, maximum: 150 },
    { name: 'setpoint', type: 'FLOAT', accessMode: 'ReadWrite' },
    { name: 'count', type: 'INT', accessMode: 'ReadOnly', minimum: 0 },
    { name: 'on', type: 'BOOLEAN', accessMode: 'ReadWrite' },
    { name: 'label', type: 'STRING', accessMode: 'ReadWrite' },
    { name: 'blob', type: 'BYTES', accessMode: 'ReadOnly' },
  ],
  factoryCAs: [],
};

function refused(fn: () => unknown): TwinMessageErrorCode {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TwinMessageError);
    return (e as TwinMessageError).code;
  }
  throw new Error('expected a TwinMessageError');
}

const update = (twin: unknown, extra: Record<string, unknown> = {}): string => JSON.stringify({ event_id: 'e-1', timestamp: 1_700_000_000_000, ...extra, twin });
const actual = (value: unknown): unknown => ({ actual: { value }, metadata: { type: 'Updated' } });

describe('twin/update decoding', () => {
  it('reads the KubeEdge shape (event_id, timestamp, twin.PROP.actual.value, metadata.type "Updated")', () => {
    const payload = JSON.stringify({
      event_id: '123e4567-e89b-12d3-a456-426614174000',
      timestamp: 1_700_000_000_000,
      twin: { temperature: { actual: { value: '21.5', metadata: { timestamp: 1_700_000_000_000 } }, metadata: { type: 'Updated' } }, on: { actual: { value: 'true' } } },
    });
    const m = decodeTwinUpdate(Buffer.from(payload), model);
    expect(m).toEqual({
      eventId: '123e4567-e89b-12d3-a456-426614174000',
      timestamp: 1_700_000_000_000,
      values: [
        { name: 'temperature', value: '21.5' },
        { name: 'on', value: 'true' },
      ],
    });
  });

  it('event_id and timestamp are optional; string input is accepted; any model property may be reported (ReadOnly and ReadWrite)', () => {
    const m = decodeTwinUpdate(JSON.stringify({ twin: { setpoint: actual('20'), count: actual('7'), label: actual(''), blob: actual('AAEC') } }), model);
    expect(m.eventId).toBeUndefined();
    expect(m.timestamp).toBeUndefined();
    expect(m.values.map((v) => v.name)).toEqual(['setpoint', 'count', 'label', 'blob']);
  });

  it('refuses garbage: not JSON, not UTF-8, a BOM, trailing data, duplicate member names, not an object', () => {
    expect(refused(() => decodeTwinUpdate(Buffer.from('not json'), model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(update({ temperature: actual('1') }))]), model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate(`${update({ temperature: actual('1') })} {}`, model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate('{"twin":{"temperature":{"actual":{"value":"1"}},"temperature":{"actual":{"value":"2"}}}}', model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate('[]', model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate('"x"', model))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinUpdate(Buffer.alloc(0), model))).toBe('twin-message/malformed');
  });

  it(`refuses a payload over ${MAX_TWIN_MESSAGE_BYTES} bytes before parsing it, and accepts one of exactly that size`, () => {
    const body = update({ temperature: actual('1') });
    const exact = body + ' '.repeat(MAX_TWIN_MESSAGE_BYTES - body.length);
    expect(decodeTwinUpdate(Buffer.from(exact), model).values).toHaveLength(1);
    expect(refused(() => decodeTwinUpdate(Buffer.from(`${exact} `), model))).toBe('twin-message/too-large');
    expect(refused(() => decodeTwinUpdate(`${exact} `, model))).toBe('twin-message/too-large');
    // multi-byte text: measured in UTF-8 bytes
    expect(refused(() => decodeTwinUpdate('é'.repeat(MAX_TWIN_MESSAGE_BYTES / 2 + 1), model))).toBe('twin-message/too-large');
  });

  it('refuses nesting deeper than the shape needs', () => {
    expect(refused(() => decodeTwinUpdate(`{"twin":{"temperature":{"actual":{"metadata":{"timestamp":[[[1]]]}}}}}`, model))).toBe('twin-message/malformed');
  });

  it('refuses wrong types and shapes', () => {
    const bad: unknown[] = [
      { twin: { temperature: actual(21.5) } }, // KubeEdge twin values are strings
      { twin: { on: actual(true) } },
      { twin: { temperature: actual(null) } },
      { twin: { temperature: null } },
      { twin: { temperature: {} } }, // no actual
      { twin: { temperature: { actual: {} } } }, // no value
      { twin: { temperature: { actual: { value: '1', extra: 1 } } } },
      { twin: { temperature: { actual: { value: '1', metadata: { timestamp: -1 } } } } },
      { twin: { temperature: { actual: { value: '1' }, metadata: { type: 7 } } } },
      { twin: { temperature: { actual: { value: '1' }, metadata: { type: 'Updated', other: 'x' } } } },
      { twin: { temperature: { actual: { value: '1' }, optional: true } } },
      { twin: { setpoint: { expected: { value: '30' }, actual: { value: '1' } } } }, // desired values come from the cloud
      { twin: [] },
      { twin: 'x' },
      { twin: {} },
      {},
      { twin: { temperature: actual('1') }, event_id: 5 },
      { twin: { temperature: actual('1') }, event_id: 'x'.repeat(129) },
      { twin: { temperature: actual('1') }, event_id: 'tab\there' },
      { twin: { temperature: actual('1') }, timestamp: 1.5 },
      { twin: { temperature: actual('1') }, timestamp: -1 },
      { twin: { temperature: actual('1') }, timestamp: '1' },
      { twin: { temperature: actual('1') }, extra: true },
    ];
    for (const b of bad) expect(refused(() => decodeTwinUpdate(JSON.stringify(b), model)), JSON.stringify(b)).toBe('twin-message/malformed');
  });

  it('refuses more properties than a model may have', () => {
    const twin = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`p${i}`, actual('1')]));
    expect(refused(() => decodeTwinUpdate(JSON.stringify({ twin }), model))).toBe('twin-message/malformed');
  });

  it('refuses a property the model does not have (the whole message), also __proto__', () => {
    expect(refused(() => decodeTwinUpdate(update({ temperature: actual('1'), humidity: actual('40') }), model))).toBe('twin-message/unknown-property');
    expect(refused(() => decodeTwinUpdate('{"twin":{"__proto__":{"actual":{"value":"1"}}}}', model))).toBe('twin-message/unknown-property');
    expect(({} as Record<string, unknown>)['actual']).toBeUndefined();
  });

  it('checks values against the model property (type and range: checkTwinValue)', () => {
    const cases: Array<[string, string]> = [
      ['temperature', '151'], // above maximum
      ['temperature', '-50.5'], // below minimum
      ['temperature', 'warm'],
      ['temperature', 'NaN'],
      ['temperature', ''],
      ['count', '1.5'],
      ['count', '-1'], // minimum 0
      ['count', '99999999999999999999'],
      ['on', 'yes'],
      ['blob', 'not base64!'],
      ['label', 'x'.repeat(1025)],
    ];
    for (const [name, value] of cases) expect(refused(() => decodeTwinUpdate(update({ [name]: actual(value) }), model)), `${name}=${value}`).toBe('twin-message/invalid-value');
    expect(decodeTwinUpdate(update({ temperature: actual('150'), count: actual('0'), label: actual('x'.repeat(1024)) }), model).values).toHaveLength(3);
  });
});

describe('twin/get and state/update decoding', () => {
  it('twin/get: {event_id?, timestamp?}; an empty payload is accepted', () => {
    expect(decodeTwinGet(Buffer.from('{"event_id":"g-1"}'))).toEqual({ eventId: 'g-1', timestamp: undefined });
    expect(decodeTwinGet(Buffer.alloc(0))).toEqual({ eventId: undefined, timestamp: undefined });
    expect(decodeTwinGet('{}')).toEqual({ eventId: undefined, timestamp: undefined });
    expect(refused(() => decodeTwinGet('{"event_id":"g","twin":{}}'))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinGet('nope'))).toBe('twin-message/malformed');
    expect(refused(() => decodeTwinGet(Buffer.alloc(MAX_TWIN_MESSAGE_BYTES + 1, 0x20)))).toBe('twin-message/too-large');
  });

  it('state/update: {event_id?, timestamp?, state}', () => {
    expect(decodeStateUpdate('{"event_id":"s","timestamp":5,"state":"online"}')).toEqual({ eventId: 's', timestamp: 5, state: 'online' });
    expect(decodeStateUpdate('{"state":"offline"}').state).toBe('offline');
    expect(refused(() => decodeStateUpdate('{}'))).toBe('twin-message/malformed');
    expect(refused(() => decodeStateUpdate('{"state":""}'))).toBe('twin-message/malformed');
    expect(refused(() => decodeStateUpdate('{"state":"on line"}'))).toBe('twin-message/malformed');
    expect(refused(() => decodeStateUpdate(`{"state":"${'a'.repeat(33)}"}`))).toBe('twin-message/malformed');
    expect(refused(() => decodeStateUpdate('{"state":1}'))).toBe('twin-message/malformed');
    expect(refused(() => decodeStateUpdate('{"state":"online","attributes":{}}'))).toBe('twin-message/malformed');
  });

  it('peekTwinEventId reads the event id of a refused message when it can, and never throws', () => {
    expect(peekTwinEventId(Buffer.from('{"event_id":"e-9","twin":{"nope":1}}'))).toBe('e-9');
    expect(peekTwinEventId(Buffer.from('garbage'))).toBeUndefined();
    expect(peekTwinEventId(Buffer.from('{"event_id":7}'))).toBeUndefined();
    expect(peekTwinEventId(Buffer.alloc(MAX_TWIN_MESSAGE_BYTES + 1, 0x20))).toBeUndefined();
  });
});

describe('encoders', () => {
  it('twin/update/result: {event_id, timestamp}, or with KubeEdge code/reason and the Edgeward error code', () => {
    expect(JSON.parse(encodeTwinResult({ eventId: 'e-1', timestamp: 5 }).toString())).toEqual({ event_id: 'e-1', timestamp: 5 });
    expect(JSON.parse(encodeTwinResult({ eventId: undefined, timestamp: 5 }).toString())).toEqual({ event_id: '', timestamp: 5 });
    const err = JSON.parse(encodeTwinResult({ eventId: 'e-2', timestamp: 6, error: { code: 'twin-message/invalid-value', status: 400, reason: 'r'.repeat(400) } }).toString()) as Record<string, unknown>;
    expect(err).toMatchObject({ event_id: 'e-2', timestamp: 6, code: 400, error: { code: 'twin-message/invalid-value' } });
    expect((err['reason'] as string).length).toBeLessThanOrEqual(260);
  });

  it('twin/update/delta: delta maps the differing properties to their desired values (KubeEdge DeviceTwinDelta)', () => {
    const d = JSON.parse(
      encodeTwinDelta({
        eventId: 'd-1',
        timestamp: 7,
        entries: [
          { name: 'setpoint', desired: '21.5', reported: { value: '19', at: 3 } },
          { name: 'on', desired: 'true', reported: undefined },
        ],
      }).toString(),
    ) as unknown;
    expect(d).toEqual({
      event_id: 'd-1',
      timestamp: 7,
      twin: { setpoint: { expected: { value: '21.5' }, actual: { value: '19', metadata: { timestamp: 3 } } }, on: { expected: { value: 'true' } } },
      delta: { setpoint: '21.5', on: 'true' },
    });
  });

  it('twin/get/result: expected and actual per property, with the value type', () => {
    const r = JSON.parse(
      encodeTwinGetResult({
        eventId: 'g-1',
        timestamp: 8,
        entries: [
          { name: 'temperature', type: 'FLOAT', desired: undefined, reported: { value: '20', at: 4 } },
          { name: 'setpoint', type: 'FLOAT', desired: '21.5', reported: undefined },
          { name: 'count', type: 'INT', desired: undefined, reported: undefined },
        ],
      }).toString(),
    ) as unknown;
    expect(r).toEqual({
      event_id: 'g-1',
      timestamp: 8,
      twin: {
        temperature: { actual: { value: '20', metadata: { timestamp: 4 } }, metadata: { type: 'float' } },
        setpoint: { expected: { value: '21.5' }, metadata: { type: 'float' } },
        count: { metadata: { type: 'int' } },
      },
    });
  });
});
