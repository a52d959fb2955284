/**
 * A read-only view of a filesystem device with an unreplayed journal applied in memory: reads
 * of blocks the journal holds newer copies of return the journal's copy (unescaped). Nothing is
 * written to the underlying device.
 */
import { BaseDevice, type BlockDevice } from "@imgpatch/disk";
import { setBe32 } from "./bytes.js";
import { JBD2_MAGIC } from "./journal.js";
import type { ReplayEntry } from "./journal-scan.js";

export class JournalReplayDevice extends BaseDevice {
  readonly name: string;
  readonly size: number;
  readonly readOnly = true;
  override readonly sectorSize: number;

  constructor(
    readonly base: BlockDevice,
    private readonly blockSize: number,
    private readonly replay: ReadonlyMap<number, ReplayEntry>,
    private readonly readJournalBlock: (i: number) => Promise<Uint8Array>,
  ) {
    super();
    this.name = `${base.name} (journal replayed in memory)`;
    this.size = base.size;
    this.sectorSize = base.sectorSize;
  }

  protected async doRead(offset: number, target: Uint8Array): Promise<void> {
    await this.base.readInto(offset, target);
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + target.length - 1) / bs);
    for (let b = first; b <= last; b++) {
      const e = this.replay.get(b);
      if (!e) continue;
      const data = (await this.readJournalBlock(e.journalBlock)).slice(0, bs);
      if (e.escaped) setBe32(data, 0, JBD2_MAGIC);
      const from = Math.max(offset, b * bs);
      const to = Math.min(offset + target.length, (b + 1) * bs);
      target.set(data.subarray(from - b * bs, to - b * bs), from - offset);
    }
  }

  protected async doWrite(): Promise<void> {
    throw new Error("unreachable: the replay view is read-only");
  }
  protected async doFlush(): Promise<void> {}
  protected async doClose(): Promise<void> {
    await this.base.close();
  }
}
