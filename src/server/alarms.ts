// The cluster's alarms (etcd's alarm store): which member raised which alarm. Part of the replicated
// state machine: ACTIVATE and DEACTIVATE travel through the log as `alarm` entries, so every member
// applies them in the same order and lists the same alarms; each change is staged for the backend
// with the entry that made it, so alarms survive restarts and travel in snapshots.
//
// What an alarm does (applier.ts): while any member's NOSPACE alarm is active, every member refuses
// the writes that cost quota (puts, txns with a put, lease grants) with etcd's NoSpace; while a
// CORRUPT alarm is active (raised by the corruption check, corrupt_check.ts, or by a client), every
// KV and lease write fails with "etcdserver: corrupt cluster".

export const AlarmType = { NONE: 0, NOSPACE: 1, CORRUPT: 2 } as const;
export const AlarmAction = { GET: 0, ACTIVATE: 1, DEACTIVATE: 2 } as const;
const ALARM_NAMES = ['NONE', 'NOSPACE', 'CORRUPT'] as const;

/** Distinct (member, type) pairs: members × 2 types, far below this. A bound all the same, since a
 *  client can ACTIVATE alarms for any member ID. */
export const ALARMS_MAX = 1024;

/** etcdserverpb.AlarmMember as the gRPC layer sends it (uint64 as a decimal string). */
export interface AlarmMember {
  memberID: string;
  alarm: number;
}

export interface AlarmRecord {
  memberId: bigint;
  type: number;
}

export class AlarmStore {
  private readonly alarms = new Map<string, AlarmRecord>(); // "<memberID>/<type>" → alarm

  /** @param persist stages one alarm's change for the backend (raised = true / cleared = false). */
  constructor(
    initial: readonly AlarmRecord[] = [],
    private readonly persist: (a: AlarmRecord, active: boolean) => void = () => undefined,
  ) {
    for (const a of initial) this.alarms.set(keyOf(a.memberId, a.type), a);
  }

  /** Alarms of `memberId` (0n = every member) of `type` (NONE = every type). */
  get(memberId: bigint, type: number): AlarmMember[] {
    return [...this.alarms.values()]
      .filter((a) => (memberId === 0n || a.memberId === memberId) && (type === AlarmType.NONE || a.type === type))
      .map(toPb);
  }

  /** True while any member has an alarm of `type` active. */
  has(type: number): boolean {
    for (const a of this.alarms.values()) if (a.type === type) return true;
    return false;
  }

  /** Raises an alarm; returns it if it was newly raised (etcd answers an ACTIVATE with the new
   *  alarm only). Applied from the log: must stay deterministic. */
  activate(memberId: bigint, type: number): AlarmMember[] {
    const key = keyOf(memberId, type);
    if (type === AlarmType.NONE || this.alarms.has(key) || this.alarms.size >= ALARMS_MAX) return [];
    const a = { memberId, type };
    this.alarms.set(key, a);
    this.persist(a, true);
    return [toPb(a)];
  }

  deactivate(memberId: bigint, type: number): AlarmMember[] {
    const key = keyOf(memberId, type);
    const a = this.alarms.get(key);
    if (!a) return [];
    this.alarms.delete(key);
    this.persist(a, false);
    return [toPb(a)];
  }

  /** Takes over the alarms of a snapshot installed from the leader (already in its backend). */
  replaceWith(list: readonly AlarmRecord[]): void {
    this.alarms.clear();
    for (const a of list) this.alarms.set(keyOf(a.memberId, a.type), a);
  }

  /** etcd's Status lists each alarm in the proto's text form: "memberID:<decimal> alarm:NOSPACE ". */
  describe(): string[] {
    return [...this.alarms.values()].map((a) => `memberID:${a.memberId} alarm:${ALARM_NAMES[a.type] ?? a.type} `);
  }
}

function keyOf(memberId: bigint, type: number): string {
  return `${memberId}/${type}`;
}

function toPb(a: AlarmRecord): AlarmMember {
  return { memberID: a.memberId.toString(), alarm: a.type };
}
