import { UnsupportedError } from "@imgpatch/disk";
import type { HostFile } from "./host-file.js";
import { openQcow2 } from "./open.js";

/**
 * Grow a qcow2 image's virtual size (like `qemu-img resize` to a larger size). The L1 table
 * grows first (new table written and synced, header switched, old table freed), then the size
 * field is updated. Shrinking is refused: it would need discarding data beyond the new end.
 */
export async function growQcow2(target: string | HostFile, newSize: number): Promise<void> {
  const dev = await openQcow2(target);
  try {
    const h = dev.header;
    if (!Number.isSafeInteger(newSize) || newSize < h.size) {
      throw new UnsupportedError(
        `cannot resize ${dev.name} from ${h.size} to ${newSize} bytes (only growing)`,
        {
          file: dev.name,
        },
      );
    }
    if (h.nbSnapshots > 0) {
      // qemu also refuses: snapshot L1 tables describe the old size.
      throw new UnsupportedError("cannot resize an image that has internal snapshots", { file: dev.name });
    }
    const needed = Math.ceil(newSize / dev.clusterSize / dev.map.l2Entries);
    if (needed > dev.map.l1Size) await dev.growL1(needed);
    await dev.flush();
    h.size = newSize;
    await dev.writeHeaderFields(["size"]);
  } finally {
    await dev.close();
  }
}
