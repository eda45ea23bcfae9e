/**
 * Resource administration (issue #5) over the private admin socket (DIR/admin/admin.sock, 0600):
 *   edgeward apply -f FILE.yaml|- [--data-dir DIR] [--json]        (cloud) one or more YAML/JSON documents
 *   edgeward get KIND [NAME] [--data-dir DIR] [--json]              (cloud, or an edge: its local copy)
 *   edgeward delete KIND NAME [--data-dir DIR] [--json]             (cloud)
 * The file is read with a size bound and parsed with the strict YAML options (no duplicate keys, no custom
 * tags, bounded aliases); every document is checked here first, with every problem reported by document
 * number, and again by the cloud. Nothing prints a secret: views carry `<redacted N bytes>` only.
 */
import { join, resolve } from 'node:path';
import { isScalar, parseAllDocuments } from 'yaml';
import { STRICT_YAML_OPTIONS } from '../../identity/index.js';
import {
  adminCall,
  MAX_ADMIN_MESSAGE_BYTES,
  parseResourceDocument,
  parseResourceKind,
  RESOURCE_KIND_NAMES,
  isNamespacedKind,
  normalizeResourceName,
  ResourceError,
  type ResourceGetResult,
  type ResourceKind,
  type ResourceView,
} from '../../protocol/index.js';
import { defineCommand, type CliIo, type Command } from '../command.js';
import { CliError, CliUsageError } from '../errors.js';
import { printable } from '../args.js';
import { readBoundedFile, readBoundedStdin, MAX_INPUT_FILE_BYTES } from '../files.js';

const dataDirFlag = { type: 'string', value: 'DIR', description: 'the cloud data dir (get: or an edge data dir) (or EDGEWARD_DATA_DIR)' } as const;
const jsonFlag = { type: 'boolean', description: 'print JSON' } as const;
/** Most documents in one file (the cloud's bound per apply). */
const MAX_DOCUMENTS = 1000;
/** YAML aliases expanded per document (the `yaml` package's default; guards against alias bombs). */
const MAX_ALIAS_COUNT = 100;

function adminSocket(dataDir: string | undefined, io: CliIo, command: string): string {
  const dir = dataDir ?? io.env['EDGEWARD_DATA_DIR'];
  if (dir === undefined || dir === '') throw new CliUsageError('--data-dir (or EDGEWARD_DATA_DIR) is required', { command });
  return join(resolve(dir), 'admin', 'admin.sock');
}

/** `configmap/app-config`. */
const ref = (kind: string, name: string): string => `${kind.toLowerCase()}/${printable(name, 253)}`;

function kindOperand(text: string, command: string): ResourceKind {
  try {
    return parseResourceKind(text);
  } catch (e) {
    if (e instanceof ResourceError) throw new CliUsageError(e.message, { command });
    throw e;
  }
}

function nameOperand(kind: ResourceKind, text: string, command: string): string {
  const name = normalizeResourceName(kind, text);
  if (name === undefined) {
    throw new CliUsageError(
      isNamespacedKind(kind)
        ? `${printable(text, 64)} is not a ${kind} name (NAMESPACE/NAME or NAME: the namespace 1-63 of [a-z0-9-], the name 1-253 of [a-z0-9.-])`
        : `${printable(text, 64)} is not a resource name (1-253 of [a-z0-9.-], starting and ending with [a-z0-9])`,
      { command },
    );
  }
  return name;
}

// ---------------------------------------------------------------------------------------------------------
// apply

/**
 * Parse a multi-document YAML (or JSON) text strictly. Empty documents (e.g. after a trailing `---`) are
 * skipped. Throws ResourceError listing every problem, each with its document number (and line).
 */
export function parseResourceFile(text: string): unknown[] {
  const docs = parseAllDocuments(text, { ...STRICT_YAML_OPTIONS, prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  const problems: string[] = [];
  const values: unknown[] = [];
  list.forEach((doc, i) => {
    const where = `document ${i + 1}`;
    const issues = [...doc.errors, ...doc.warnings];
    if (issues.length > 0) {
      for (const e of issues.slice(0, 5)) {
        const line = e.linePos?.[0]?.line;
        problems.push(`${where}${line === undefined ? '' : ` (line ${line})`}: not valid YAML: ${e.code}: ${(e.message.split('\n')[0] ?? '').slice(0, 200)}`);
      }
      return;
    }
    // An empty document (a comment only, or after a trailing `---`) is skipped; an explicit `null` is not.
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null && doc.contents.source === '')) return;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      problems.push(`${where}: ${e instanceof Error ? e.message.split('\n')[0]?.slice(0, 200) : 'cannot be read'} (aliases are limited to ${MAX_ALIAS_COUNT})`);
      return;
    }
    const line = doc.contents.range === undefined ? undefined : lineOf(text, doc.contents.range[0]);
    try {
      parseResourceDocument(value);
    } catch (e) {
      if (!(e instanceof ResourceError)) throw e;
      problems.push(`${where}${line === undefined ? '' : ` (line ${line})`}: ${e.message}`);
      return;
    }
    values.push(value);
  });
  if (problems.length > 0) throw new ResourceError(problems);
  if (values.length === 0) throw new ResourceError(['no resource documents']);
  if (values.length > MAX_DOCUMENTS) throw new ResourceError([`at most ${MAX_DOCUMENTS} documents per apply (got ${values.length}); split the file`]);
  return values;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

interface ApplyResult {
  results: { kind: ResourceKind; name: string; version: number; action: string }[];
}

const applyInner = defineCommand({
  name: 'apply',
  summary: 'create or update resources on the cloud from a YAML file (all or nothing)',
  operands: '',
  description: [
    'FILE holds one or more YAML (or JSON) documents separated by `---`:',
    '  apiVersion: edgeward.io/v1',
    '  kind: ConfigMap            # Workload | ConfigMap | Secret | Device | DeviceModel',
    '  metadata: {name: app-config, nodes: [edge-1]}   # nodes: node names, or ["*"]',
    '  data: {LOG_LEVEL: info}',
    '`-f -` reads standard input. Unchanged resources keep their version.',
  ].join('\n'),
  args: {
    flags: {
      file: { type: 'string', value: 'FILE', description: 'the YAML file (-f; "-" for standard input)' },
      'data-dir': dataDirFlag,
      json: jsonFlag,
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const file = flags.file;
    if (file === undefined) throw new CliUsageError('-f FILE (or --file FILE) is required', { command: 'apply' });
    const socket = adminSocket(flags['data-dir'], io, 'apply');
    const bytes = file === '-' ? await readBoundedStdin(MAX_INPUT_FILE_BYTES) : await readBoundedFile(file, MAX_INPUT_FILE_BYTES);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (e) {
      throw new ResourceError([`${file === '-' ? 'standard input' : printable(file)} is not UTF-8 text`], { cause: e });
    }
    let documents: unknown[];
    try {
      documents = parseResourceFile(text);
    } catch (e) {
      if (!(e instanceof ResourceError) || e.problems.length <= 1) throw e;
      // One line per problem, then the summary (the error line is bounded).
      for (const p of e.problems) io.stderr(`  ${printable(p, 1000)}\n`);
      throw new ResourceError([`${e.problems.length} problems in ${file === '-' ? 'standard input' : printable(file)} (listed above); nothing was applied`]);
    }
    const request = JSON.stringify({ v: 1, method: 'resource.apply', params: { documents } });
    if (Buffer.byteLength(request, 'utf8') + 1 > MAX_ADMIN_MESSAGE_BYTES) {
      throw new CliError('cli/file-too-large', `the documents are larger than one admin request (${MAX_ADMIN_MESSAGE_BYTES} bytes as JSON); split the file`);
    }
    const r = (await adminCall(socket, 'resource.apply', { documents })) as ApplyResult;
    io.stdout(flags.json ? JSON.stringify(r) + '\n' : r.results.map((o) => `${ref(o.kind, o.name)} ${printable(o.action, 20)} (version ${o.version})\n`).join(''));
    return 0;
  },
});

/** `-f FILE` and `-f -` as well as `--file FILE` / `--file=-` (the flag parser knows only long flags, and takes `-` for a flag). */
function rewriteFileFlag(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if ((a === '-f' || a === '--file') && argv[i + 1] === '-') {
      out.push('--file=-');
      i++;
    } else if (a === '-f') out.push('--file');
    else out.push(a);
  }
  return out;
}

export const applyCommand: Command = {
  ...applyInner,
  usage: 'edgeward apply -f FILE|- [--data-dir DIR] [--json]',
  run: (argv, io) => applyInner.run(rewriteFileFlag(argv), io),
};

// ---------------------------------------------------------------------------------------------------------
// get

const iso = (ms: number): string => (Number.isFinite(ms) ? new Date(ms).toISOString() : '-');

function nodesCell(nodes: readonly string[]): string {
  const shown = nodes.slice(0, 3).map((n) => printable(n, 63));
  return nodes.length > 3 ? `${shown.join(',')},+${nodes.length - 3}` : shown.join(',');
}

/** `edge-1@12 edge-2@9(old)`; `-` when nobody acknowledged; `+N` when more nodes did than are listed. */
function ackedCell(v: ResourceView): string {
  if (v.acks === undefined) return '-';
  const shown = v.acks.slice(0, 5).map((a) => `${printable(a.node, 63)}@${a.version}${a.current ? '' : '(old)'}`);
  const total = v.acksTotal ?? v.acks.length;
  if (shown.length === 0) return '-';
  return total > shown.length ? `${shown.join(' ')} +${total - shown.length} (${v.acksCurrent ?? '?'}/${total} current)` : shown.join(' ');
}

function table(items: readonly ResourceView[], edge: boolean): string {
  const head = edge ? ['KIND', 'NAME', 'VERSION', 'NODES'] : ['KIND', 'NAME', 'VERSION', 'NODES', 'ACKED'];
  const rows = [head, ...items.map((v) => [v.kind, printable(v.name, 253), String(v.version), nodesCell(v.nodes), ...(edge ? [] : [ackedCell(v)])])];
  const widths = head.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join('  ')).join('\n') + '\n';
}

function dataLines(v: ResourceView): string[] {
  const d = v.data;
  const inner = d['data'];
  if (typeof inner === 'object' && inner !== null && !Array.isArray(inner)) {
    const keys = Object.keys(inner);
    if (keys.length === 0) return ['data:          (none)'];
    return ['data:', ...keys.map((k) => `  ${printable(k, 253)}: ${printable(String((inner as Record<string, unknown>)[k]), 1000)}`)];
  }
  if ('spec' in d) {
    const text = JSON.stringify(d['spec'], null, 2) ?? 'null';
    const lines = text.split('\n');
    const shown = lines.slice(0, 200).map((l) => `  ${printable(l, 1000)}`);
    return ['spec:', ...shown, ...(lines.length > 200 ? [`  ... (${lines.length - 200} more lines; use --json)`] : [])];
  }
  return [];
}

function details(v: ResourceView): string {
  const out = [
    `kind:          ${v.kind}`,
    `name:          ${printable(v.name, 253)}`,
    `version:       ${v.version}`,
    `nodes:         ${v.nodes.map((n) => printable(n, 63)).join(', ')}`,
    `source:        ${v.source}`,
    `updated at:    ${iso(v.updatedAt)}`,
    ...dataLines(v),
  ];
  if (v.acks !== undefined) {
    const total = v.acksTotal ?? v.acks.length;
    out.push(`acks:          ${total === 0 ? 'none' : `${v.acksCurrent ?? v.acks.filter((a) => a.current).length} of ${total} at the current version`}`);
    for (const a of v.acks) out.push(`  ${printable(a.node, 63).padEnd(20)} version ${String(a.version).padEnd(8)} ${a.current ? 'current' : 'old    '}  ${iso(a.ackedAt)}`);
    if (total > v.acks.length) out.push(`  ... ${total - v.acks.length} more (use --json)`);
  }
  if (v.status !== undefined) {
    const total = v.statusTotal ?? v.status.length;
    out.push(`status:        ${total === 0 ? 'none' : `${total} node(s)`}`);
    for (const s of v.status) {
      const observed = s.observedVersion === undefined ? '' : ` (version ${s.observedVersion})`;
      const message = s.message === undefined ? '' : `: ${printable(s.message, 300)}`;
      out.push(`  ${printable(s.node, 63).padEnd(20)} ${printable(s.phase, 32)}${observed} at ${iso(s.at)}${message}`);
    }
    if (total > v.status.length) out.push(`  ... ${total - v.status.length} more (use --json)`);
  }
  if (v.kind === 'Device') out.push(...twinLines(v));
  return out.join('\n') + '\n';
}

/**
 * A Device's twin (issue #6): per property, the desired value (the spec, set on the cloud) and, per node status,
 * the reported value (the status detail the node sent through its outbox), with when it was reported and when the
 * device was last seen.
 */
function twinLines(v: ResourceView): string[] {
  const spec = (v.data['spec'] ?? {}) as { properties?: Array<{ name?: unknown; desired?: { value?: unknown } }> };
  const desired = new Map<string, string>();
  for (const p of spec.properties ?? []) if (typeof p.name === 'string' && typeof p.desired?.value === 'string') desired.set(p.name, p.desired.value);
  const out = ['twin:'];
  const reports = (v.status ?? []).filter((s) => s.detail !== undefined);
  if (reports.length === 0) {
    out.push('  (nothing reported yet)');
    for (const [k, d] of desired) out.push(`  ${printable(k, 63).padEnd(24)} desired ${printable(d, 80)}`);
    return out;
  }
  for (const s of reports) {
    const d = s.detail as { twins?: Record<string, { value?: unknown; at?: unknown }>; lastSeen?: unknown; state?: unknown };
    const lastSeen = typeof d.lastSeen === 'number' ? iso(d.lastSeen) : 'never';
    out.push(`  node ${printable(s.node, 63)}: ${printable(s.phase, 32)}, last seen ${lastSeen}${typeof d.state === 'string' ? `, state ${printable(d.state, 32)}` : ''}`);
    out.push(`    ${'PROPERTY'.padEnd(24)} ${'DESIRED'.padEnd(16)} ${'REPORTED'.padEnd(16)} REPORTED AT`);
    const twins = d.twins ?? {};
    for (const k of [...new Set([...desired.keys(), ...Object.keys(twins)])].sort()) {
      const r = twins[k];
      const reported = typeof r?.value === 'string' ? printable(r.value, 80) : '-';
      const at = typeof r?.at === 'number' ? iso(r.at) : '-';
      out.push(`    ${printable(k, 63).padEnd(24)} ${printable(desired.get(k) ?? '-', 80).padEnd(16)} ${reported.padEnd(16)} ${at}`);
    }
  }
  return out;
}

export const getCommand = defineCommand({
  name: 'get',
  summary: 'list resources of a kind, or show one with its per-node acks and status (cloud or edge)',
  operands: 'KIND [NAME]',
  description: `KIND: ${RESOURCE_KIND_NAMES} (case-insensitive, singular or plural). Against an edge data dir it shows the edge's local copy.`,
  args: { flags: { 'data-dir': dataDirFlag, json: jsonFlag }, positionals: { min: 1, max: 2 } },
  async run({ flags, positionals }, io) {
    const kind = kindOperand(positionals[0] as string, 'get');
    const name = positionals[1] === undefined ? undefined : nameOperand(kind, positionals[1], 'get');
    const socket = adminSocket(flags['data-dir'], io, 'get');
    const r = (await adminCall(socket, 'resource.get', name === undefined ? { kind } : { kind, name })) as ResourceGetResult;
    if (flags.json) {
      io.stdout(JSON.stringify(r) + '\n');
      return 0;
    }
    if (name !== undefined) {
      const v = r.items[0];
      if (v === undefined) throw new CliError('cli/internal', 'the admin socket returned no resource');
      io.stdout(details(v));
      return 0;
    }
    if (r.items.length === 0) {
      io.stdout(`no ${kind.toLowerCase()} resources\n`);
      return 0;
    }
    const edge = r.items.every((v) => v.source === 'edge');
    io.stdout(table(r.items, edge));
    if (r.truncated === true) io.stdout(`(${(r.total ?? r.items.length) - r.items.length} more not shown: get KIND NAME, or --json)\n`);
    return 0;
  },
});

// ---------------------------------------------------------------------------------------------------------
// delete

export const deleteCommand = defineCommand({
  name: 'delete',
  summary: 'delete a resource on the cloud (its nodes delete their copies)',
  operands: 'KIND NAME',
  args: { flags: { 'data-dir': dataDirFlag, json: jsonFlag }, positionals: { min: 2, max: 2 } },
  async run({ flags, positionals }, io) {
    const kind = kindOperand(positionals[0] as string, 'delete');
    const name = nameOperand(kind, positionals[1] as string, 'delete');
    const socket = adminSocket(flags['data-dir'], io, 'delete');
    const r = (await adminCall(socket, 'resource.delete', { kind, name })) as { kind: string; name: string; version: number };
    io.stdout(flags.json ? JSON.stringify(r) + '\n' : `${ref(r.kind, r.name)} deleted (version ${r.version})\n`);
    return 0;
  },
});
