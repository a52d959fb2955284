import { FileDevice } from "@imgpatch/disk";
import { Ext4Fs } from "../src/index.js";
const fs = await Ext4Fs.open(await FileDevice.open(process.argv[2]));
console.log(await fs.readdir("/"), await fs.readdir("/etc"));
console.log(await fs.readdir("/etc/agent"));
