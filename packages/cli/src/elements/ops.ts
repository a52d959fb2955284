/** Guest operations an elements plan consists of (all owned by root:root). */

export type OpSource = { host: string } | { text: string };

export type GuestOp =
  | { op: "mkdir"; path: string; mode: number; reason: string }
  | { op: "write"; path: string; mode: number; source: OpSource; reason: string; onlyIfAbsent?: boolean }
  | { op: "symlink"; path: string; target: string; reason: string }
  | { op: "enable"; unit: string; reason: string }
  | { op: "firstboot"; name: string; script: string; before: string[]; reason: string };

/** Paths never written: /run is a tmpfs at boot, /var/run a link to it. */
export function isVolatilePath(path: string): boolean {
  return /^\/(var\/)?run(\/|$)/.test(path);
}

function mode(m: number): string {
  return m.toString(8).padStart(4, "0");
}

/** One line per operation, for --dry-run. */
export function renderOp(op: GuestOp): string {
  switch (op.op) {
    case "mkdir":
      return `mkdir     ${mode(op.mode)} root:root ${op.path}   # ${op.reason}`;
    case "write": {
      const from =
        "host" in op.source ? op.source.host : `${Buffer.byteLength(op.source.text)} bytes generated`;
      return `write     ${mode(op.mode)} root:root ${op.path}${op.onlyIfAbsent ? " (if absent)" : ""} <- ${from}   # ${op.reason}`;
    }
    case "symlink":
      return `symlink             ${op.path} -> ${op.target}   # ${op.reason}`;
    case "enable":
      return `enable              ${op.unit} (symlinks as systemctl enable)   # ${op.reason}`;
    case "firstboot":
      return `firstboot           queue "${op.name}" before ${op.before.join(", ") || "-"}   # ${op.reason}`;
  }
}
