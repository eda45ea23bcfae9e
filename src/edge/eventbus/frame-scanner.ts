/**
 * Bounds the size of MQTT packets on a raw byte stream (MQTT 3.1.1 2.2.3: the Remaining Length is a variable
 * byte integer of at most four bytes, up to 268,435,455). mqtt-packet's parser (aedes) has no limit and would
 * buffer a whole announced packet; this scanner follows the fixed headers chunk by chunk and says no as soon as
 * a packet announces more than `maxPacketBytes` (fixed header included), or a malformed length. Pure.
 */
export class FrameScanner {
  readonly #max: number;
  /** 0: at a packet's first byte; 1: reading the remaining length; 2: skipping the packet's body. */
  #state: 0 | 1 | 2 = 0;
  #length = 0;
  #multiplier = 1;
  #lengthBytes = 0;
  #remaining = 0;
  #failed = false;

  constructor(maxPacketBytes: number) {
    this.#max = maxPacketBytes;
  }

  /** Feed the next chunk; false (and from then on always false) once a packet is too large or malformed. */
  feed(chunk: Uint8Array): boolean {
    if (this.#failed) return false;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.#state === 2) {
        const skip = Math.min(this.#remaining, n - i);
        this.#remaining -= skip;
        i += skip;
        if (this.#remaining === 0) this.#state = 0;
        continue;
      }
      if (this.#state === 0) {
        i++; // packet type and flags
        this.#state = 1;
        this.#length = 0;
        this.#multiplier = 1;
        this.#lengthBytes = 0;
        continue;
      }
      const b = chunk[i++]!;
      this.#length += (b & 0x7f) * this.#multiplier;
      this.#multiplier *= 128;
      this.#lengthBytes++;
      if ((b & 0x80) !== 0) {
        if (this.#lengthBytes >= 4) return this.#fail(); // 2.2.3: at most four bytes
        continue;
      }
      if (1 + this.#lengthBytes + this.#length > this.#max) return this.#fail();
      this.#remaining = this.#length;
      this.#state = this.#remaining === 0 ? 0 : 2;
    }
    return true;
  }

  #fail(): false {
    this.#failed = true;
    return false;
  }
}
