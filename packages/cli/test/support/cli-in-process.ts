/**
 * The CLI run in-process (runCli with a capturing CliIo): exit code, stdout and stderr text.
 * `env` is the whole environment the command sees (empty by default: no host variable leaks in).
 */
import { type CliIo, runCli } from "../../src/commands/main.js";

export async function cliInProcess(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: CliIo = { out: (t) => (out += t), err: (t) => (err += t), env };
  const code = await runCli(args, io);
  return { code, out, err };
}
