/** Errors of the diskimage-builder elements engine. */
import { ImgpatchError } from "@imgpatch/disk";

export class ElementError extends ImgpatchError {
  constructor(code: string, message: string, file?: string) {
    super(code, message, { file });
  }
}

/** An element named by the user or by an element-deps file is on no ELEMENTS_PATH entry. */
export class MissingElementError extends ElementError {
  constructor(
    readonly element: string,
    readonly requiredBy: string | undefined,
    elementsPath: readonly string[],
  ) {
    super(
      "EELEMENT_MISSING",
      `element "${element}"${requiredBy ? ` (required by ${requiredBy})` : ""} not found in ELEMENTS_PATH ${elementsPath.join(":")}`,
    );
  }
}

/** DIB refuses an element that is explicitly requested but also provided by another element. */
export class AlreadyProvidedError extends ElementError {
  constructor(conflicts: Array<[string, string[]]>) {
    super(
      "EELEMENT_PROVIDED",
      `elements requested explicitly but already provided by other elements: ${conflicts
        .map(([e, by]) => `${e} (provided by ${by.join(", ")})`)
        .join("; ")}`,
    );
  }
}

/** An ELEMENTS_PATH entry is not a directory. */
export class InvalidElementsPathError extends ElementError {
  constructor(entry: string) {
    super("EELEMENT_PATH", `ELEMENTS_PATH entry is not a directory`, entry);
  }
}

/** Two elements ship the same hook name directly inside a phase directory (DIB aborts the build). */
export class DuplicateHookError extends ElementError {
  constructor(readonly duplicates: Array<{ path: string; elements: string[] }>) {
    super(
      "EELEMENT_DUPLICATE_HOOK",
      `duplicated hooks in your elements: ${duplicates.map((d) => `${d.path} (${d.elements.join(", ")})`).join("; ")}`,
    );
  }
}

/** Bad content in an element file (package-installs.yaml, pkg-map, ...). */
export class ElementFormatError extends ElementError {
  constructor(message: string, file: string) {
    super("EELEMENT_FORMAT", message, file);
  }
}
