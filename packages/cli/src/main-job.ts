/**
 * `npm start`: the main job (bake the Heat software-deployment agents into the bundled default
 * image). Until the elements recipe lands this prints what the engine can do today, honestly.
 */
const status: Array<[string, string]> = [
  ["@imgpatch/disk", "block devices (raw files, memory, partition views), MBR/GPT, format detection"],
  ["@imgpatch/qcow2", "qcow2 reader/writer (in progress)"],
  ["@imgpatch/ext4", "ext2/3/4 reader (in progress); editor not yet"],
  ["@imgpatch/rpm-inject", "RPM parser (in progress); injection not yet"],
  ["imgpatch", "guest API, CLI and the heat-agents main job: not yet implemented"],
];

console.log("imgpatch main job: not available yet — the Heat-agents recipe depends on work in progress.");
console.log("What exists in this checkout:");
for (const [name, what] of status) console.log(`  ${name.padEnd(22)} ${what}`);
console.log("Run the tests with: npm test");
