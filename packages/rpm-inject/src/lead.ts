/**
 * The 96-byte lead that starts every RPM. Only the magic, version and type still matter; the
 * rest (arch/os numbers, name) is legacy and informational.
 *
 *   0  magic      ED AB EE DB
 *   4  major      u8   (3 or 4; v6 packages still write 4)
 *   5  minor      u8
 *   6  type       u16  0 = binary, 1 = source
 *   8  archnum    u16
 *  10  name       66 bytes, NUL-padded
 *  76  osnum      u16
 *  78  sigtype    u16  5 = signature is a header structure
 *  80  reserved   16 bytes
 */
import { RpmFormatError, RpmUnsupportedError } from "./errors.js";

export const LEAD_SIZE = 96;
export const LEAD_MAGIC = [0xed, 0xab, 0xee, 0xdb] as const;
const Lead = { magic: 0, major: 4, minor: 5, type: 6, archnum: 8, name: 10, osnum: 76, sigtype: 78 } as const;
const NAME_SIZE = 66;
const SIGTYPE_HEADER = 5;

export interface RpmLead {
  major: number;
  minor: number;
  /** 0 binary, 1 source. */
  type: number;
  name: string;
  sigType: number;
}

export function parseLead(bytes: Uint8Array, file: string): RpmLead {
  if (bytes.length < LEAD_SIZE) throw new RpmFormatError("truncated lead", { file, offset: 0 });
  for (let i = 0; i < 4; i++) {
    if (bytes[Lead.magic + i] !== LEAD_MAGIC[i]) {
      throw new RpmFormatError("not an RPM: bad lead magic (expected ed ab ee db)", { file, offset: 0 });
    }
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[Lead.major];
  if (major !== 3 && major !== 4) {
    throw new RpmUnsupportedError(`unsupported RPM lead version ${major}.${bytes[Lead.minor]}`, {
      file,
      offset: Lead.major,
    });
  }
  const sigType = dv.getUint16(Lead.sigtype);
  if (sigType !== SIGTYPE_HEADER) {
    throw new RpmUnsupportedError(`unsupported signature type ${sigType} (only header signatures)`, {
      file,
      offset: Lead.sigtype,
    });
  }
  const nameBytes = bytes.subarray(Lead.name, Lead.name + NAME_SIZE);
  const nul = nameBytes.indexOf(0);
  return {
    major,
    minor: bytes[Lead.minor],
    type: dv.getUint16(Lead.type),
    name: new TextDecoder().decode(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes),
    sigType,
  };
}
