/**
 * Streaming XML for repository metadata: saxes (pure JS, non-validating) fed chunk by chunk, so
 * memory stays bounded by the largest single text node and tag, which are capped here. Every
 * failure becomes a RepoFormatError naming the file and the byte position.
 */
import { type SaxesAttributePlain, SaxesParser } from "saxes";
import { RepoFormatError, RepoLimitError } from "./errors.js";

export interface XmlHandlers {
  open(name: string, attrs: Record<string, string>): void;
  close(name: string): void;
  /** Text directly inside the current element (called once per text run). */
  text?(text: string): void;
}

export interface XmlLimits {
  /** Longest text run or tag, in characters. */
  maxText: number;
  /** Deepest element nesting. */
  maxDepth: number;
  /** Decompressed bytes in total. */
  maxBytes: number;
}

/** Characters handed to saxes at a time: a text run without tags is caught within one piece. */
const PIECE = 256 * 1024;

export const DEFAULT_XML_LIMITS: XmlLimits = { maxText: 1 << 20, maxDepth: 64, maxBytes: 8 * 2 ** 30 };

export async function parseXml(
  chunks: AsyncIterable<Uint8Array>,
  h: XmlHandlers,
  where: string,
  limits: XmlLimits = DEFAULT_XML_LIMITS,
): Promise<void> {
  // Position tracking costs saxes a lot; text and tag length are bounded by counting the
  // characters written between events instead.
  const parser = new SaxesParser({ xmlns: false, position: false });
  let written = 0;
  let failure: unknown = null;
  let depth = 0;
  let seenRoot = false;
  let lastEvent = 0;
  const guard = (fn: () => void) => {
    if (failure !== null) return;
    try {
      fn();
    } catch (e) {
      failure = e;
    }
  };
  parser.on("opentag", (tag) => {
    lastEvent = written;
    guard(() => {
      depth++;
      seenRoot = true;
      if (depth > limits.maxDepth) {
        throw new RepoLimitError(`XML nested deeper than ${limits.maxDepth}`, {
          file: where,
          offset: lastEvent,
        });
      }
      h.open(tag.name, tag.attributes as Record<string, string>);
    });
  });
  parser.on("closetag", (tag) => {
    lastEvent = written;
    guard(() => {
      depth--;
      h.close(tag.name);
    });
  });
  if (h.text !== undefined) {
    const text = h.text;
    parser.on("text", (t) => {
      lastEvent = written;
      guard(() => text(t));
    });
  }
  parser.on("error", (e) => {
    if (failure === null) failure = new RepoFormatError(`bad XML: ${e.message}`, { file: where });
  });
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let total = 0;
  const step = (s: string) => {
    // saxes throws after its error handler ran for some errors; the handler already kept the first.
    try {
      parser.write(s);
    } catch (e) {
      if (failure === null)
        failure = new RepoFormatError(`bad XML: ${(e as Error).message}`, { file: where });
    }
    written += s.length;
    if (failure === null && written - lastEvent > limits.maxText + PIECE) {
      failure = new RepoLimitError(`XML text or tag longer than ${limits.maxText} characters`, {
        file: where,
        offset: lastEvent,
      });
    }
  };
  try {
    for await (const chunk of chunks) {
      total += chunk.length;
      if (total > limits.maxBytes) {
        throw new RepoLimitError(`more than ${limits.maxBytes} bytes of XML`, { file: where });
      }
      let s: string;
      try {
        s = decoder.decode(chunk, { stream: true });
      } catch {
        throw new RepoFormatError("XML is not valid UTF-8", { file: where, offset: total - chunk.length });
      }
      // Feed in pieces so a hostile run without tags is caught after at most one piece.
      for (let i = 0; i < s.length && failure === null; i += PIECE)
        step(s.length <= PIECE ? s : s.slice(i, i + PIECE));
      if (failure !== null) throw failure;
    }
    step(decoder.decode());
    if (failure === null) {
      try {
        parser.close();
      } catch (e) {
        if (failure === null)
          failure = new RepoFormatError(`bad XML: ${(e as Error).message}`, { file: where });
      }
    }
  } catch (e) {
    if (e instanceof RepoFormatError) throw e;
    if (failure === null) failure = e;
  }
  if (failure !== null) {
    if (failure instanceof RepoFormatError) throw failure;
    const f = failure as Error;
    if (f instanceof Error && "code" in f && typeof (f as { code: unknown }).code === "string") throw f;
    throw new RepoFormatError(`bad XML: ${f?.message ?? String(f)}`, { file: where, offset: lastEvent });
  }
  if (!seenRoot) throw new RepoFormatError("no XML document", { file: where });
}

export type { SaxesAttributePlain };
