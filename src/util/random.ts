/**
 * Small seeded pseudo-random numbers for reproducible shuffles (documents, activation buffers). Math.random cannot be seeded,
 * and a run must shuffle the same way when it is repeated or resumed.
 */

/** A generator of floats in [0, 1). */
export type Random = () => number;

/**
 * mulberry32: 32-bit state, passes the usual statistical batteries for this kind of use (shuffling),
 * and is a few lines with no dependency. Any integer seed is accepted; it is mixed first so that
 * nearby seeds (0, 1, 2) give unrelated streams.
 */
export function mulberry32(seed: number): Random {
  const rng = new Mulberry32(seed);
  return () => rng.next();
}

/**
 * mulberry32 with its 32-bit state exposed, for streams that must resume exactly where an interrupted
 * run stopped (save `state`, restore it with `Mulberry32.fromState`).
 */
export class Mulberry32 {
  state: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    // Fold the high bits of seeds beyond 32 bits in, so that 2**32 + 1 differs from 1.
    this.state = mix32((seed >>> 0) ^ Math.floor(seed / 2 ** 32)) | 0;
  }

  static fromState(state: number): Mulberry32 {
    const rng = new Mulberry32(0);
    rng.state = state | 0;
    return rng;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** murmur3's finaliser: spreads every input bit over the output. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** A uniform integer in [0, n). */
export function randomInt(random: Random, n: number): number {
  return Math.floor(random() * n);
}

/** Fisher-Yates, in place; returns the same array. */
export function shuffleInPlace<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(random, i + 1);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
  return items;
}

/**
 * Shuffles a stream with a bounded buffer (the way Hugging Face shuffles streaming datasets): the
 * buffer is filled, then each new item replaces a randomly chosen buffered one, which is yielded.
 * When the stream has no more than `bufferSize` items this is a uniform shuffle of all of them;
 * otherwise items move at most about `bufferSize` places, and memory stays bounded.
 */
export async function* bufferedShuffle<T>(
  source: AsyncIterable<T> | Iterable<T>,
  bufferSize: number,
  random: Random,
  /** Items for which this is true skip the buffer and are yielded at once, in order (no random draw). */
  passThrough: (item: T) => boolean = () => false,
): AsyncGenerator<T> {
  if (!Number.isInteger(bufferSize) || bufferSize < 1) {
    throw new RangeError(`bufferSize must be a positive integer, got ${bufferSize}`);
  }
  const buffer: T[] = [];
  for await (const item of source) {
    if (passThrough(item)) {
      yield item;
      continue;
    }
    if (buffer.length < bufferSize) {
      buffer.push(item);
      continue;
    }
    const j = randomInt(random, bufferSize);
    const out = buffer[j] as T;
    buffer[j] = item;
    yield out;
  }
  shuffleInPlace(buffer, random);
  yield* buffer;
}
