// The bbolt file format (etcd's backend database), enough to write a database that bbolt opens and
// checks clean, and to read every bucket of one that etcd wrote. It is the format of etcd's
// snapshot files: `etcdctl snapshot status` and `etcdctl snapshot restore` open them with bbolt, so
// quorumkv's Maintenance.Snapshot writes one (etcd_db.ts maps the backend onto etcd's buckets),
// and `quorumkv snapshot restore` reads snapshots taken from etcd.
//
// Layout (little-endian, as bbolt writes on x86 and arm64), pages of PAGE_BYTES:
//   page header (16 bytes): id u64 | flags u16 | count u16 | overflow u32 (extra pages that follow)
//   meta page (pages 0 and 1): header, then magic u32 | version u32 | page size u32 | flags u32 |
//     root bucket (root page u64, sequence u64) | freelist page u64 | high-water page id u64 |
//     txid u64 | checksum u64 (FNV-1a 64 of the 56 bytes before it)
//   leaf page: header, `count` elements of (flags u32 | pos u32 | ksize u32 | vsize u32), then the
//     keys and values; pos counts from the element to its key, the value follows the key
//   branch page: header, `count` elements of (pos u32 | ksize u32 | child page u64), then the keys
//     (each child's first key)
//   freelist page: header with count = free page ids, then the ids as u64
// A bucket is a leaf element of its parent with flag BUCKET_LEAF_FLAG whose value is the bucket's
// header (root page u64 | sequence u64); root 0 means an inline bucket, whose one leaf page follows
// the header inside the value.
//
// The writer lays pages out sequentially: meta 0, meta 1 and the (empty) freelist first, then each
// bucket's leaves as the sorted keys arrive, its branch levels, and last the root bucket's page.
// Nothing is ever freed, so the freelist is empty and every page below the high-water mark is
// reachable (bbolt's Tx.Check passes).
import fs from 'node:fs';
import { assert } from '../../util/assert';

export const PAGE_BYTES = 4096;
/** Page sizes a bbolt file may have (OS page sizes: 4 KiB on x86, up to 64 KiB on some arm64). */
const PAGE_BYTES_MIN = 1024;
const PAGE_BYTES_MAX = 64 * 1024;
const PAGE_HEADER_BYTES = 16;
const LEAF_ELEMENT_BYTES = 16;
const BRANCH_ELEMENT_BYTES = 16;
const BUCKET_HEADER_BYTES = 16;
/** Levels a bucket's B+tree may have: a branch page holds at least two children, so 64 levels
 *  would already address 2^64 leaves. Deeper is corruption (and would nest the walk without bound). */
const TREE_DEPTH_MAX = 64;
const META_BYTES = 64;

const BRANCH_PAGE = 0x01;
const LEAF_PAGE = 0x02;
const META_PAGE = 0x04;
const FREELIST_PAGE = 0x10;
const BUCKET_LEAF_FLAG = 0x01;

const MAGIC = 0xed0cdaed;
const VERSION = 2;
const FIRST_DATA_PAGE = 3;
/** Elements per page: bbolt's count field is a u16. */
const ELEMENTS_PER_PAGE_MAX = 0xffff;
/**
 * Elements a leaf takes even past one page (its overflow pages hold them), as bbolt's own split
 * leaves nodes of two (minKeysPerPage) large elements: one 4 KiB value per leaf would take two
 * pages, 8 KiB, where two share three (6 KiB each). Smaller elements fill a page as before.
 * Measured on a 20k × 4 KiB backend: 157 MiB with one per leaf, etcd's own file 118 MiB.
 */
const LEAF_ELEMENTS_OVER_PAGE = 2;

export class BoltFormatError extends Error {
  override name = 'BoltFormatError';
}

/** FNV-1a 64 (bbolt's meta checksum). */
function fnv1a64(b: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of b) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * 0x100000001b3n);
  return h;
}

/** The first 4 KiB of a file: is it a bbolt database (a valid meta page)? */
export function isBoltHeader(first: Buffer): boolean {
  if (first.length < PAGE_HEADER_BYTES + META_BYTES) return false;
  return readMeta(first, 0) !== undefined;
}

interface Meta {
  pageSize: number;
  root: bigint;
  freelist: bigint;
  highWater: bigint;
  txid: bigint;
}

function readMeta(page: Buffer, off: number): Meta | undefined {
  if (page.length < off + PAGE_HEADER_BYTES + META_BYTES) return undefined;
  if ((page.readUInt16LE(off + 8) & META_PAGE) === 0) return undefined;
  const m = off + PAGE_HEADER_BYTES;
  if (page.readUInt32LE(m) !== MAGIC || page.readUInt32LE(m + 4) !== VERSION) return undefined;
  if (fnv1a64(page.subarray(m, m + 56)) !== page.readBigUInt64LE(m + 56)) return undefined;
  // bbolt's page size is the OS page size: a power of two. One read from the file (a size of 4 GiB
  // made BoltReader.open allocate that much, found by fuzzing) or one too small for a page
  // header is not a bbolt meta page.
  const pageSize = page.readUInt32LE(m + 8);
  if (pageSize < PAGE_BYTES_MIN || pageSize > PAGE_BYTES_MAX || (pageSize & (pageSize - 1)) !== 0) return undefined;
  return {
    pageSize,
    root: page.readBigUInt64LE(m + 16),
    freelist: page.readBigUInt64LE(m + 32),
    highWater: page.readBigUInt64LE(m + 40),
    txid: page.readBigUInt64LE(m + 48),
  };
}

// ---- writer ---------------------------------------------------------------------------------------

/** Appends pages at increasing positions; `write` must be done with `bytes` (a view of the
 *  writer's scratch buffer, reused for the next page) when its promise settles. */
export type PageSink = (bytes: Buffer, position: number) => Promise<void>;

/** A leaf element's value: a Buffer, or anything that knows its length and copies itself into a
 *  page (an encoding written straight into the page, without a Buffer of its own). */
export interface LeafValue {
  readonly length: number;
  copy(target: Buffer, targetStart: number): number;
}

interface BranchEntry {
  key: Buffer;
  page: number;
}

/** Bytes a leaf element takes in a page. */
const leafCost = (k: Buffer, v: LeafValue) => LEAF_ELEMENT_BYTES + k.length + v.length;

/** Pages an image of `bodyBytes` after its header takes (its overflow pages included). */
const pagesFor = (bodyBytes: number) => Math.max(1, Math.ceil((PAGE_HEADER_BYTES + bodyBytes) / PAGE_BYTES));

function writeLeafElements(buf: Buffer, base: number, elems: readonly [Buffer, LeafValue, number][]): void {
  buf.writeUInt16LE(elems.length, base + 10);
  let data = base + PAGE_HEADER_BYTES + elems.length * LEAF_ELEMENT_BYTES;
  for (let i = 0; i < elems.length; i++) {
    const [k, v, flags] = elems[i]!;
    const el = base + PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
    buf.writeUInt32LE(flags, el);
    buf.writeUInt32LE(data - el, el + 4);
    buf.writeUInt32LE(k.length, el + 8);
    buf.writeUInt32LE(v.length, el + 12);
    data += k.copy(buf, data);
    const n = v.copy(buf, data);
    assert(n === v.length, 'bolt writer: a leaf value copies its length');
    data += n;
  }
}

/** Meta page `id` (0 or 1) of a database whose root bucket is at `rootPage` and whose pages end
 *  before `highWater`. */
function metaPage(id: number, rootPage: number, highWater: number): Buffer {
  const buf = Buffer.alloc(PAGE_BYTES);
  buf.writeBigUInt64LE(BigInt(id), 0);
  buf.writeUInt16LE(META_PAGE, 8);
  const m = PAGE_HEADER_BYTES;
  buf.writeUInt32LE(MAGIC, m);
  buf.writeUInt32LE(VERSION, m + 4);
  buf.writeUInt32LE(PAGE_BYTES, m + 8);
  buf.writeUInt32LE(0, m + 12);
  buf.writeBigUInt64LE(BigInt(rootPage), m + 16);
  buf.writeBigUInt64LE(0n, m + 24);
  buf.writeBigUInt64LE(2n, m + 32);
  buf.writeBigUInt64LE(BigInt(highWater), m + 40);
  buf.writeBigUInt64LE(BigInt(id), m + 48);
  buf.writeBigUInt64LE(fnv1a64(buf.subarray(m, m + 56)), m + 56);
  return buf;
}

/** The empty freelist (page 2). */
function freelistPage(): Buffer {
  const buf = Buffer.alloc(PAGE_BYTES);
  buf.writeBigUInt64LE(2n, 0);
  buf.writeUInt16LE(FREELIST_PAGE, 8);
  return buf;
}

/** Writes a bbolt database of top-level buckets, one bucket at a time, keys ascending: data pages
 *  in order from page 3, then the freelist (page 2) and the meta pages (0, 1) at their positions. */
export class BoltWriter {
  private nextPage = FIRST_DATA_PAGE;
  private readonly buckets: { name: Buffer; root: number }[] = [];
  private open: BoltBucketWriter | undefined;
  /** Page images are built here (grown to the largest), then handed to the sink: a zeroed
   *  Buffer per leaf cost an allocation and the first touch of fresh memory for every page. */
  private scratch = Buffer.alloc(0);

  constructor(private readonly sink: PageSink) {}

  /** @internal writes one page image of `bodyBytes` after its header (overflow pages as needed)
   *  as the next page; `fill` writes the body and the header's count. Returns its page id. */
  async emit(flags: number, bodyBytes: number, fill: (buf: Buffer) => void): Promise<number> {
    const id = this.nextPage;
    const pages = pagesFor(bodyBytes);
    this.nextPage += pages;
    const bytes = pages * PAGE_BYTES;
    if (this.scratch.length < bytes) this.scratch = Buffer.allocUnsafeSlow(Math.max(bytes, 2 * this.scratch.length));
    const buf = this.scratch.subarray(0, bytes);
    buf.fill(0); // what an element does not cover is zeros, not what the scratch held before
    buf.writeBigUInt64LE(BigInt(id), 0);
    buf.writeUInt16LE(flags, 8);
    buf.writeUInt32LE(pages - 1, 12);
    fill(buf);
    await this.sink(buf, id * PAGE_BYTES);
    return id;
  }

  bucket(name: string): BoltBucketWriter {
    if (this.open) throw new Error(`bolt writer: bucket ${this.open.name} is still open`);
    const nameBuf = Buffer.from(name, 'utf8');
    if (this.buckets.some((b) => b.name.equals(nameBuf))) throw new Error(`bolt writer: bucket ${name} written twice`);
    this.open = new BoltBucketWriter(this, name, (root) => {
      this.buckets.push({ name: nameBuf, root });
      this.open = undefined;
    });
    return this.open;
  }

  /** Writes the root bucket, the freelist and both meta pages; returns the database's size. */
  async finish(): Promise<number> {
    if (this.open) throw new Error(`bolt writer: bucket ${this.open.name} is still open`);
    const sorted = [...this.buckets].sort((a, b) => Buffer.compare(a.name, b.name));
    const root = new BoltBucketWriter(this, '(root)', () => undefined);
    for (const b of sorted) {
      const header = Buffer.alloc(BUCKET_HEADER_BYTES);
      header.writeBigUInt64LE(BigInt(b.root), 0);
      await root.addElement(b.name, header, BUCKET_LEAF_FLAG);
    }
    const rootPage = await root.finishTree();
    const highWater = this.nextPage;
    await this.sink(freelistPage(), 2 * PAGE_BYTES);
    await this.sink(metaPage(0, rootPage, highWater), 0);
    await this.sink(metaPage(1, rootPage, highWater), PAGE_BYTES);
    return highWater * PAGE_BYTES;
  }
}

/** One bucket's B+tree, built bottom-up from ascending keys. */
export class BoltBucketWriter {
  private leaf: [Buffer, LeafValue, number][] = [];
  private leafBytes = PAGE_HEADER_BYTES;
  private readonly level: BranchEntry[] = [];
  private last: Buffer | undefined;
  private closed = false;

  constructor(
    private readonly w: BoltWriter,
    readonly name: string,
    private readonly onClose: (root: number) => void,
  ) {}

  /** Adds a key (strictly greater than the previous one) and its value. `value` is read when its
   *  leaf is written (a later add, or close). */
  add(key: Buffer, value: LeafValue): Promise<void> {
    return this.addElement(key, value, 0);
  }

  /** @internal */
  async addElement(key: Buffer, value: LeafValue, flags: number): Promise<void> {
    if (this.closed) throw new Error(`bolt writer: bucket ${this.name} is closed`);
    if (key.length === 0) throw new Error(`bolt writer: empty key in bucket ${this.name}`);
    if (this.last !== undefined && Buffer.compare(this.last, key) >= 0) throw new Error(`bolt writer: keys out of order in bucket ${this.name}`);
    this.last = key;
    const cost = leafCost(key, value);
    const full = this.leaf.length >= LEAF_ELEMENTS_OVER_PAGE && this.leafBytes + cost > PAGE_BYTES;
    if (full || this.leaf.length === ELEMENTS_PER_PAGE_MAX) await this.flushLeaf();
    this.leaf.push([key, value, flags]);
    this.leafBytes += cost;
  }

  private async flushLeaf(): Promise<void> {
    const elems = this.leaf;
    const id = await this.w.emit(LEAF_PAGE, this.leafBytes - PAGE_HEADER_BYTES, (buf) => writeLeafElements(buf, 0, elems));
    this.level.push({ key: elems.length > 0 ? elems[0]![0] : Buffer.alloc(0), page: id });
    this.leaf = [];
    this.leafBytes = PAGE_HEADER_BYTES;
  }

  /** @internal Writes the last leaf and the branch levels; returns the root page. */
  async finishTree(): Promise<number> {
    this.closed = true;
    // An empty bucket still gets a (zero-element) leaf page as its root.
    if (this.leaf.length > 0 || this.level.length === 0) await this.flushLeaf();
    let level = this.level;
    while (level.length > 1) level = await this.branchLevel(level);
    return level[0]!.page;
  }

  /** Closes the bucket (its tree goes to the file). */
  async close(): Promise<void> {
    this.onClose(await this.finishTree());
  }

  /** Groups `children` into branch pages (at least two children each); returns the new level. */
  private async branchLevel(children: BranchEntry[]): Promise<BranchEntry[]> {
    const groups: BranchEntry[][] = [];
    let cur: BranchEntry[] = [];
    let bytes = PAGE_HEADER_BYTES;
    for (const c of children) {
      const cost = BRANCH_ELEMENT_BYTES + c.key.length;
      if (cur.length >= 2 && (bytes + cost > PAGE_BYTES || cur.length === ELEMENTS_PER_PAGE_MAX)) {
        groups.push(cur);
        cur = [];
        bytes = PAGE_HEADER_BYTES;
      }
      cur.push(c);
      bytes += cost;
    }
    if (cur.length === 1 && groups.length > 0) groups[groups.length - 1]!.push(cur[0]!);
    else groups.push(cur);
    const out: BranchEntry[] = [];
    for (const g of groups) {
      const body = g.reduce((n, c) => n + BRANCH_ELEMENT_BYTES + c.key.length, 0);
      const id = await this.w.emit(BRANCH_PAGE, body, (buf) => {
        buf.writeUInt16LE(g.length, 10);
        let data = PAGE_HEADER_BYTES + g.length * BRANCH_ELEMENT_BYTES;
        g.forEach((c, i) => {
          const el = PAGE_HEADER_BYTES + i * BRANCH_ELEMENT_BYTES;
          buf.writeUInt32LE(data - el, el);
          buf.writeUInt32LE(c.key.length, el + 4);
          buf.writeBigUInt64LE(BigInt(c.page), el + 8);
          data += c.key.copy(buf, data);
        });
      });
      out.push({ key: g[0]!.key, page: id });
    }
    return out;
  }
}

// ---- reader ---------------------------------------------------------------------------------------

/** Reads a bbolt database file (read-only, positioned reads; nothing is mapped or cached). */
export class BoltReader {
  private constructor(
    private readonly fd: number,
    readonly pageSize: number,
    private readonly meta: Meta,
    readonly fileBytes: number,
  ) {}

  static open(file: string): BoltReader {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const first = Buffer.alloc(Math.min(size, PAGE_BYTES));
      fs.readSync(fd, first, 0, first.length, 0);
      const m0 = readMeta(first, 0);
      if (!m0) throw new BoltFormatError('not a bbolt database (no valid meta page)');
      const second = Buffer.alloc(m0.pageSize);
      const n = fs.readSync(fd, second, 0, second.length, m0.pageSize);
      const m1 = n === second.length ? readMeta(second, 0) : undefined;
      const meta = m1 && m1.txid > m0.txid ? m1 : m0;
      if (meta.highWater * BigInt(meta.pageSize) > BigInt(size)) {
        throw new BoltFormatError(`bbolt database truncated: ${size} bytes, its meta page says ${meta.highWater} pages of ${meta.pageSize}`);
      }
      return new BoltReader(fd, meta.pageSize, meta, size);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** The database's size as bbolt reports it (Tx.Size: high-water mark × page size). */
  get size(): number {
    return Number(this.meta.highWater) * this.pageSize;
  }

  private page(id: bigint): Buffer {
    if (id < 2n || id >= this.meta.highWater) throw new BoltFormatError(`bbolt page ${id} is out of bounds (high-water mark ${this.meta.highWater})`);
    const pos = Number(id) * this.pageSize;
    const head = Buffer.alloc(this.pageSize);
    if (fs.readSync(this.fd, head, 0, head.length, pos) !== head.length) throw new BoltFormatError(`bbolt page ${id}: short read`);
    if (head.readBigUInt64LE(0) !== id) throw new BoltFormatError(`bbolt page ${id}: its header says page ${head.readBigUInt64LE(0)}`);
    const overflow = head.readUInt32LE(12);
    if (overflow === 0) return head;
    if (id + BigInt(overflow) >= this.meta.highWater) throw new BoltFormatError(`bbolt page ${id}: overflow past the high-water mark`);
    const all = Buffer.alloc((overflow + 1) * this.pageSize);
    head.copy(all, 0);
    const rest = all.length - head.length;
    if (fs.readSync(this.fd, all, head.length, rest, pos + head.length) !== rest) throw new BoltFormatError(`bbolt page ${id}: short read`);
    return all;
  }

  /** Elements of the page at `base` in `buf` (a page, or an inline bucket's page), in order.
   *  `seen`: the pages of this tree already entered. A bbolt bucket is a tree, so a page met twice
   *  (a branch pointing at itself or an ancestor, or two branches sharing a child) is corruption:
   *  without the check, a cycle recursed until the stack overflowed (a RangeError, found by
   *  fuzzing), and shared children could multiply the walk without bound. */
  private *walk(buf: Buffer, base: number, seen: Set<bigint>, depth: number): Generator<[Buffer, Buffer, number]> {
    if (depth > TREE_DEPTH_MAX) throw new BoltFormatError(`bbolt tree deeper than ${TREE_DEPTH_MAX} pages`);
    if (base + PAGE_HEADER_BYTES > buf.length) throw new BoltFormatError('bbolt page header past its buffer');
    const flags = buf.readUInt16LE(base + 8);
    const count = buf.readUInt16LE(base + 10);
    if (flags & LEAF_PAGE) {
      for (let i = 0; i < count; i++) {
        const el = base + PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
        if (el + LEAF_ELEMENT_BYTES > buf.length) throw new BoltFormatError('bbolt leaf element past its page');
        const k = el + buf.readUInt32LE(el + 4);
        const ks = buf.readUInt32LE(el + 8);
        const vs = buf.readUInt32LE(el + 12);
        if (k + ks + vs > buf.length) throw new BoltFormatError('bbolt leaf element past its page');
        yield [buf.subarray(k, k + ks), buf.subarray(k + ks, k + ks + vs), buf.readUInt32LE(el)];
      }
    } else if (flags & BRANCH_PAGE) {
      for (let i = 0; i < count; i++) {
        const el = base + PAGE_HEADER_BYTES + i * BRANCH_ELEMENT_BYTES;
        if (el + BRANCH_ELEMENT_BYTES > buf.length) throw new BoltFormatError('bbolt branch element past its page');
        yield* this.walk(this.treePage(buf.readBigUInt64LE(el + 8), seen), 0, seen, depth + 1);
      }
    } else {
      throw new BoltFormatError(`bbolt page ${buf.readBigUInt64LE(base)}: not a branch or leaf page (flags ${flags})`);
    }
  }

  /** Page `id` of the tree being walked, refused if the walk entered it before. */
  private treePage(id: bigint, seen: Set<bigint>): Buffer {
    if (seen.has(id)) throw new BoltFormatError(`bbolt page ${id} is reached twice in one tree`);
    seen.add(id);
    return this.page(id);
  }

  private *bucketElements(header: Buffer): Generator<[Buffer, Buffer, number]> {
    // A bucket's value starts with its header (root page, sequence); a shorter one is corrupt
    // (read as is, it threw a RangeError, found by fuzzing).
    if (header.length < BUCKET_HEADER_BYTES) throw new BoltFormatError(`bbolt bucket header of ${header.length} bytes`);
    const root = header.readBigUInt64LE(0);
    if (root === 0n) {
      // Inline bucket: its page follows the header inside the value.
      yield* this.walk(header, BUCKET_HEADER_BYTES, new Set(), 0);
    } else {
      const seen = new Set<bigint>();
      yield* this.walk(this.treePage(root, seen), 0, seen, 0);
    }
  }

  /** The elements of the root bucket (the top-level buckets). */
  private rootElements(): Generator<[Buffer, Buffer, number]> {
    const seen = new Set<bigint>();
    return this.walk(this.treePage(this.meta.root, seen), 0, seen, 0);
  }

  /** Top-level bucket names, in order. */
  buckets(): string[] {
    const out: string[] = [];
    for (const [k, , flags] of this.rootElements()) if (flags & BUCKET_LEAF_FLAG) out.push(k.toString('utf8'));
    return out;
  }

  /** Every key and value of a top-level bucket, in key order (nothing if there is no such
   *  bucket). The buffers are valid until the next step. Nested buckets are skipped. */
  *entries(bucket: string): Generator<[Buffer, Buffer]> {
    const name = Buffer.from(bucket, 'utf8');
    for (const [k, v, flags] of this.rootElements()) {
      if (!(flags & BUCKET_LEAF_FLAG) || !k.equals(name)) continue;
      for (const [ck, cv, cflags] of this.bucketElements(Buffer.from(v))) if (!(cflags & BUCKET_LEAF_FLAG)) yield [ck, cv];
      return;
    }
  }
}

/** A PageSink that gathers consecutive pages into writes of about `bytes` (one write per 4 KiB
 *  page would be a system call per page); call flush() after the writer finishes. Pages are
 *  copied into two buffers allocated once, one being written while the writer fills the other
 *  (fresh memory for every write cost more than the copy: the first touch of each page, ~8 ms a
 *  MiB on this VM). A failed write is thrown by the next call. `write` must be done with its
 *  bytes when its promise settles. */
export function bufferedSink(write: (bytes: Buffer, position: number) => Promise<void>, bytes = 1024 * 1024): PageSink & { flush(): Promise<void> } {
  assert(bytes > 0, 'bufferedSink: a positive buffer size');
  const buffers = [Buffer.allocUnsafeSlow(bytes), Buffer.allocUnsafeSlow(bytes)];
  let cur = 0;
  let used = 0;
  let start = 0;
  let inFlight: Promise<void> | undefined;
  const settle = async () => {
    const p = inFlight;
    inFlight = undefined;
    await p;
  };
  const launch = async () => {
    if (used === 0) return;
    const buf = buffers[cur]!.subarray(0, used);
    await settle(); // the other buffer's write is done: it may be filled again
    inFlight = write(buf, start);
    inFlight.catch(() => undefined); // rethrown by the next settle()
    cur ^= 1;
    used = 0;
  };
  const sink = async (page: Buffer, position: number) => {
    if (used > 0 && (position !== start + used || used + page.length > bytes)) await launch();
    if (page.length > bytes) {
      // A page image larger than a buffer (an overflow leaf of a large value) goes on its own.
      await settle();
      await write(page, position);
      return;
    }
    if (used === 0) start = position;
    used += page.copy(buffers[cur]!, used);
    if (used === bytes) await launch();
  };
  const flush = async () => {
    await launch();
    await settle();
  };
  return Object.assign(sink, { flush });
}
