/**
 * The edge agent's own CA for standalone mode (issue #3: "the edge agent runs standalone with its own
 * CA"). Wraps the pure CaManager with persistence: keys in the host's 0600 key store (StateFiles port), the rotation state in
 * `ca/state.json` (0600, atomic writes), ticked by the caller every few seconds.
 */
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaManager, EdgewardError, type CaEvent, type CaManagerConfig, type CaSnapshot, type Clock, type StateFiles } from '../../identity/index.js';

export type LocalCaErrorCode = 'local-ca/corrupt-state';
export class LocalCaError extends EdgewardError<LocalCaErrorCode> {}

const MAX_STATE_BYTES = 1024 * 1024;

export interface LocalCaOptions extends CaManagerConfig {
  /** Directory for `state.json` and `keys/` (created 0700). */
  dir: string;
  clock: Clock;
  files: StateFiles;
}

export class LocalCa {
  readonly manager: CaManager;
  readonly #statePath: string;
  readonly #clock: Clock;
  readonly #files: StateFiles;

  private constructor(manager: CaManager, statePath: string, clock: Clock, files: StateFiles) {
    this.manager = manager;
    this.#statePath = statePath;
    this.#clock = clock;
    this.#files = files;
  }

  /** Restore the CA from `dir`, or create it. Always leaves an active CA behind (ticks once). */
  static open(opts: LocalCaOptions): { ca: LocalCa; events: CaEvent[] } {
    const keys = opts.files.openKeyStore(join(opts.dir, 'keys'));
    const statePath = join(opts.dir, 'state.json');
    let manager: CaManager;
    if (existsSync(statePath)) {
      const st = lstatSync(statePath);
      if (!st.isFile() || st.size > MAX_STATE_BYTES) throw new LocalCaError('local-ca/corrupt-state', 'CA state is not a regular file of sane size');
      let snap: CaSnapshot;
      try {
        snap = JSON.parse(readFileSync(statePath, 'utf8')) as CaSnapshot;
      } catch (e) {
        throw new LocalCaError('local-ca/corrupt-state', 'CA state is not valid JSON', { cause: e });
      }
      manager = CaManager.restore(opts, keys, snap);
    } else {
      manager = new CaManager(opts, keys);
    }
    const ca = new LocalCa(manager, statePath, opts.clock, opts.files);
    const events = ca.tick();
    if (events.length === 0 && !existsSync(statePath)) ca.#persist();
    return { ca, events };
  }

  /** Advance rotation to now; persists the state when anything changed. */
  tick(): CaEvent[] {
    const events = this.manager.tick(this.#clock.now());
    if (events.length > 0) this.#persist();
    return events;
  }

  #persist(): void {
    this.#files.writeFileAtomic(this.#statePath, JSON.stringify(this.manager.snapshot()), 0o600);
  }
}
